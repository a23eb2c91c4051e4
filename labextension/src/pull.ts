/**
 * Pull and build jobs as rows: target, state, progress bar with percentage,
 * layer count (pulls) or step count and last log lines (builds), and Cancel
 * (running) or Dismiss (ended).
 */
import { h, VirtualElement } from '@lumino/virtualdom';

import { IPanelActions } from './actions';
import { percent } from './format';
import { MLContainerModel } from './model';
import { button, chip, kids } from './ui';
import { IJob } from './tokens';

/** How many of a build's last log lines a row shows. */
const BUILD_LOG_LINES = 4;

export function renderJob(
  job: IJob,
  model: MLContainerModel,
  actions: IPanelActions
): VirtualElement {
  const build = job.kind === 'build';
  const steps = build ? job.layers['steps'] : undefined;
  const layers = build ? [] : Object.values(job.layers);
  const complete = layers.filter(l =>
    /complete|already exists/i.test(l.status ?? '')
  ).length;
  const running = job.state === 'running';
  const lastLog = job.log.length > 0 ? job.log[job.log.length - 1] : '';
  const progress =
    job.progress !== null
      ? job.progress
      : steps && steps.total > 0
        ? Math.min(1, Math.max(0, (steps.current - 1) / steps.total))
        : null;
  const progressAttrs =
    progress === null
      ? {} // indeterminate
      : { value: String(progress) };

  return h.div(
    {
      key: job.id,
      className: `mlc-row mlc-job-row mlc-job-${job.state}`,
      dataset: { testid: 'mlc-job-row', 'job-id': job.id, state: job.state }
    },
    h.div(
      { className: 'mlc-row-head' },
      chip(job.kind, 'mlc-chip-kind'),
      h.span({ className: 'mlc-job-target', title: job.target }, job.target),
      chip(job.state, `mlc-state mlc-state-${job.state}`)
    ),
    ...kids(
      running &&
        h.div(
          { className: 'mlc-progress-line' },
          h.progress({
            className: 'mlc-progress',
            max: '1',
            ...progressAttrs,
            dataset: { testid: 'mlc-pull-progress' },
            'aria-label': `${build ? 'Building' : 'Pulling'} ${job.target}`
          }),
          h.span(
            {
              className: 'mlc-progress-text',
              dataset: { testid: 'mlc-pull-percent' }
            },
            progress === null ? '…' : percent(progress)
          )
        ),
      build &&
        steps &&
        steps.total > 0 &&
        h.div(
          {
            className: 'mlc-job-detail',
            dataset: { testid: 'mlc-build-steps' }
          },
          `step ${steps.current}/${steps.total}`
        ),
      build &&
        job.log.length > 0 &&
        h.pre(
          {
            className: 'mlc-build-log',
            dataset: { testid: 'mlc-build-log' }
          },
          job.log.slice(-BUILD_LOG_LINES).join('\n')
        ),
      layers.length > 0 &&
        h.div(
          { className: 'mlc-job-detail' },
          `${complete}/${layers.length} layers`,
          ...kids(lastLog && ` · ${lastLog}`)
        ),
      job.error &&
        h.div(
          {
            className: 'mlc-message mlc-message-error',
            dataset: { testid: 'mlc-job-error' }
          },
          job.error
        ),
      h.div(
        { className: 'mlc-actions' },
        running
          ? button('Cancel', () => void actions.cancelJob(job), {
              testid: 'mlc-pull-cancel',
              title: `Cancel ${build ? 'building' : 'pulling'} ${job.target}`,
              disabled: model.isBusy(`cancel:${job.id}`)
            })
          : button('Dismiss', () => model.dismiss(job.id), {
              testid: 'mlc-job-dismiss'
            })
      )
    )
  );
}
