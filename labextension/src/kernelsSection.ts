/**
 * "Kernels": one row per container kernel with its notebook, image, container,
 * state, GPUs, CPU and memory, why it died if it did, and Freeze and Stop
 * actions.
 */
import { h, VirtualElement } from '@lumino/virtualdom';

import { formatBytes, ratio, shortId } from './format';
import { Section } from './section';
import { CommandIDs, IContainerKernel } from './tokens';
import { bar, button, chip, field, kids, message } from './ui';

export class KernelsSection extends Section<IContainerKernel[]> {
  constructor(options: Omit<Section.IOptions, 'key' | 'title'>) {
    super({ ...options, key: 'kernels', title: options.trans.__('Kernels') });
  }

  protected count(): number | null {
    return this.model.kernels.data?.length ?? null;
  }

  protected state(): Section.IState<IContainerKernel[]> {
    const trans = this.trans;
    const { data, error, httpStatus } = this.model.kernels;
    return {
      data,
      error: error
        ? this.engineDown(httpStatus)
          ? trans.__('Kernels need the Docker engine (see above).')
          : trans.__('Could not list kernels: %1', error)
        : null,
      loading: trans.__('Loading kernels…')
    };
  }

  protected render(
    data: IContainerKernel[],
    stale: boolean
  ): VirtualElement[] {
    if (data.length === 0) {
      return [
        message(
          'hint',
          'mlc-kernels-empty',
          this.trans.__(
            'No container kernel running. Open a notebook on an ML container kernel (Images → New notebook, or pick one in the Launcher) to start one.'
          )
        )
      ];
    }
    return [
      h.div(
        { className: `mlc-rows${stale ? ' mlc-stale' : ''}` },
        ...data.map(kernel => this._row(kernel))
      )
    ];
  }

  private _row(kernel: IContainerKernel): VirtualElement {
    const trans = this.trans;
    const kernelId = kernel.kernel_id;
    const path = kernel.notebook_path;
    const memory = ratio(kernel.memory_usage, kernel.memory_limit);
    const memoryText =
      kernel.memory_usage === null
        ? '—'
        : kernel.memory_limit
          ? `${formatBytes(kernel.memory_usage)} / ${formatBytes(kernel.memory_limit)}`
          : formatBytes(kernel.memory_usage);
    const stopping = this.model.isBusy(`stop:${kernel.kernel_id}`);
    // A cluster kernel whose job waits in the queue: its start has not returned yet.
    const queued = kernel.state === 'created' && !kernel.node && !!kernel.status;
    return h.div(
      {
        key: kernel.kernel_id,
        className: `mlc-row mlc-kernel-row${kernel.death ? ' mlc-kernel-dead' : ''}`,
        dataset: {
          testid: 'mlc-kernel-row',
          'kernel-id': kernel.kernel_id,
          state: kernel.state
        }
      },
      h.div(
        { className: 'mlc-row-head' },
        path
          ? h.a(
              {
                className: 'mlc-path',
                href: '#',
                title: trans.__('Open %1', path),
                dataset: { testid: 'mlc-kernel-notebook' },
                onclick: (event: MouseEvent) => {
                  event.preventDefault();
                  void this.commands.execute('docmanager:open', { path });
                }
              },
              path
            )
          : h.span(
              {
                className: 'mlc-path mlc-muted',
                dataset: { testid: 'mlc-kernel-notebook' }
              },
              trans.__('no notebook (kernel %1)', kernel.kernel_id.slice(0, 8))
            ),
        chip(kernel.state, `mlc-state mlc-state-${kernel.state}`)
      ),
      h.div(
        { className: 'mlc-row-meta' },
        field(trans.__('Image'), kernel.image, 'mlc-kernel-image'),
        kernel.node
          ? field(trans.__('Node'), kernel.node, 'mlc-kernel-node')
          : field(
              trans.__('Container'),
              h.code({ title: kernel.container_id }, shortId(kernel.container_id))
            ),
        field(trans.__('Spec'), kernel.kernelspec),
        field(
          trans.__('GPUs'),
          kernel.gpus || trans.__('none'),
          'mlc-kernel-gpus'
        )
      ),
      h.div(
        { className: 'mlc-row-meta mlc-usage' },
        field(
          trans.__('CPU'),
          kernel.cpu_percent === null
            ? '—'
            : `${kernel.cpu_percent.toFixed(1)}%`,
          'mlc-kernel-cpu'
        ),
        h.span(
          { className: 'mlc-field mlc-field-bar' },
          h.span({ className: 'mlc-field-label' }, trans.__('Memory')),
          bar(memory, memoryText, 'mlc-kernel-memory')
        )
      ),
      ...kids(
        kernel.status &&
          (queued || kernel.node) &&
          message(
            queued ? 'warning' : 'info',
            'mlc-kernel-job',
            kernel.status
          ),
        kernel.limits_ignored &&
          message('warning', 'mlc-kernel-limits', kernel.limits_ignored),
        kernel.death &&
          message(
            'error',
            'mlc-kernel-death',
            kernel.death.oom_killed
              ? trans.__(
                  'Out of memory: %1 (exit code %2)',
                  kernel.death.message,
                  kernel.death.exit_code
                )
              : trans.__(
                  'Died: %1 (exit code %2)',
                  kernel.death.message,
                  kernel.death.exit_code
                )
          )
      ),
      h.div(
        { className: 'mlc-actions' },
        ...kids(
          !kernel.death &&
            !queued &&
            button(
              trans.__('Freeze'),
              () =>
                void this.commands.execute(CommandIDs.freezeKernel, {
                  kernelId
                }),
              {
                testid: 'mlc-freeze',
                title: trans.__(
                  'Write a Dockerfile and requirements reproducing this kernel'
                ),
                disabled: this.model.isBusy(`freeze:${kernelId}`)
              }
            )
        ),
        button(
          queued ? trans.__('Cancel') : trans.__('Stop'),
          () => void this.commands.execute(CommandIDs.stopKernel, { kernelId }),
          {
            testid: 'mlc-kernel-stop',
            title: queued
              ? trans.__('Cancel this kernel’s job: it leaves the queue')
              : trans.__('Stop this kernel and its container'),
            className: 'mlc-button-danger',
            disabled: stopping
          }
        )
      )
    );
  }
}
