/**
 * Pull and build jobs as rows: target, state, progress bar with percentage,
 * layer count (pulls) or step count and last log lines (builds), and Cancel
 * (running) or Dismiss (ended).
 */
import { TranslationBundle } from '@jupyterlab/translation';
import { CommandRegistry } from '@lumino/commands';
import { h, VirtualElement } from '@lumino/virtualdom';

import { percent } from './format';
import { MLContainerModel } from './model';
import { button, chip, kids } from './ui';
import { CommandIDs, IJob } from './tokens';

/** How many of a build's last log lines a row shows. */
const BUILD_LOG_LINES = 4;

export function renderJob(
  job: IJob,
  model: MLContainerModel,
  commands: CommandRegistry,
  trans: TranslationBundle
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
      chip(
        build ? trans.__('build') : trans.__('pull'),
        'mlc-chip-kind'
      ),
      h.span({ className: 'mlc-job-target', title: job.target }, job.target),
      chip(stateLabel(job, trans), `mlc-state mlc-state-${job.state}`)
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
            'aria-label': build
              ? trans.__('Building %1', job.target)
              : trans.__('Pulling %1', job.target)
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
          trans.__('step %1/%2', steps.current, steps.total)
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
          trans.__('%1/%2 layers', complete, layers.length),
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
          ? button(
              trans.__('Cancel'),
              () =>
                void commands.execute(CommandIDs.cancelJob, { jobId: job.id }),
              {
                testid: 'mlc-pull-cancel',
                title: build
                  ? trans.__('Cancel building %1', job.target)
                  : trans.__('Cancel pulling %1', job.target),
                disabled: model.isBusy(`cancel:${job.id}`)
              }
            )
          : button(trans.__('Dismiss'), () => model.dismiss(job.id), {
              testid: 'mlc-job-dismiss'
            })
      )
    )
  );
}

/** A job's state, in words. */
function stateLabel(job: IJob, trans: TranslationBundle): string {
  switch (job.state) {
    case 'running':
      return trans.__('running');
    case 'done':
      return trans.__('done');
    case 'error':
      return trans.__('error');
    case 'cancelled':
      return trans.__('cancelled');
    default:
      return job.state;
  }
}
