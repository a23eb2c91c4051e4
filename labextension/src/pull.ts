/**
 * Pull jobs as rows: target, state, progress bar with percentage, layer count,
 * last log line, and Cancel (running) or Dismiss (ended).
 */
import { h, VirtualElement } from '@lumino/virtualdom';

import { IPanelActions } from './actions';
import { percent } from './format';
import { MLContainerModel } from './model';
import { button, chip, kids } from './ui';
import { IJob } from './tokens';

export function renderJob(
  job: IJob,
  model: MLContainerModel,
  actions: IPanelActions
): VirtualElement {
  const layers = Object.values(job.layers);
  const complete = layers.filter(l =>
    /complete|already exists/i.test(l.status)
  ).length;
  const running = job.state === 'running';
  const lastLog = job.log.length > 0 ? job.log[job.log.length - 1] : '';
  const progressAttrs =
    job.progress === null
      ? {} // indeterminate
      : { value: String(job.progress) };

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
            'aria-label': `Pulling ${job.target}`
          }),
          h.span(
            {
              className: 'mlc-progress-text',
              dataset: { testid: 'mlc-pull-percent' }
            },
            job.progress === null ? '…' : percent(job.progress)
          )
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
              title: `Cancel pulling ${job.target}`,
              disabled: model.isBusy(`cancel:${job.id}`)
            })
          : button('Dismiss', () => model.dismiss(job.id), {
              testid: 'mlc-job-dismiss'
            })
      )
    )
  );
}
