/**
 * "Kernels": one row per container kernel with its notebook, image, container,
 * state, GPUs, CPU and memory, why it died if it did, and Freeze and Stop
 * actions.
 */
import { h, VirtualElement } from '@lumino/virtualdom';

import { formatBytes, ratio, shortId } from './format';
import { Section } from './section';
import { IContainerKernel } from './tokens';
import { bar, button, chip, field, kids, message } from './ui';

export class KernelsSection extends Section {
  constructor(options: Omit<Section.IOptions, 'key' | 'title'>) {
    super({ ...options, key: 'kernels', title: 'Kernels' });
  }

  protected count(): number | null {
    return this.model.kernels.data?.length ?? null;
  }

  protected render(): VirtualElement[] {
    const { data, error, httpStatus } = this.model.kernels;
    const out: VirtualElement[] = [];
    if (error) {
      out.push(
        httpStatus === 503 || this.model.engineReachable === false
          ? message(
              'error',
              'mlc-kernels-error',
              'Kernels need the Docker engine (see above).'
            )
          : message(
              'error',
              'mlc-kernels-error',
              `Could not list kernels: ${error}`
            )
      );
    }
    if (data === null) {
      if (!error) {
        out.push(message('info', 'mlc-kernels-loading', 'Loading kernels…'));
      }
      return out;
    }
    if (data.length === 0) {
      out.push(
        message(
          'hint',
          'mlc-kernels-empty',
          'No container kernel running. Open a notebook on an ML container kernel ' +
            '(Images → New notebook, or pick one in the Launcher) to start one.'
        )
      );
      return out;
    }
    out.push(
      h.div(
        { className: `mlc-rows${error ? ' mlc-stale' : ''}` },
        ...data.map(kernel => this._row(kernel))
      )
    );
    return out;
  }

  private _row(kernel: IContainerKernel): VirtualElement {
    const path = kernel.notebook_path;
    const memory = ratio(kernel.memory_usage, kernel.memory_limit);
    const memoryText =
      kernel.memory_usage === null
        ? '—'
        : kernel.memory_limit
          ? `${formatBytes(kernel.memory_usage)} / ${formatBytes(kernel.memory_limit)}`
          : formatBytes(kernel.memory_usage);
    const stopping = this.model.isBusy(`stop:${kernel.kernel_id}`);
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
                title: `Open ${path}`,
                dataset: { testid: 'mlc-kernel-notebook' },
                onclick: (event: MouseEvent) => {
                  event.preventDefault();
                  this.actions.openPath(path);
                }
              },
              path
            )
          : h.span(
              {
                className: 'mlc-path mlc-muted',
                dataset: { testid: 'mlc-kernel-notebook' }
              },
              `no notebook (kernel ${kernel.kernel_id.slice(0, 8)})`
            ),
        chip(kernel.state, `mlc-state mlc-state-${kernel.state}`)
      ),
      h.div(
        { className: 'mlc-row-meta' },
        field('Image', kernel.image, 'mlc-kernel-image'),
        field(
          'Container',
          h.code({ title: kernel.container_id }, shortId(kernel.container_id))
        ),
        field('Spec', kernel.kernelspec),
        field('GPUs', kernel.gpus || 'none', 'mlc-kernel-gpus')
      ),
      h.div(
        { className: 'mlc-row-meta mlc-usage' },
        field(
          'CPU',
          kernel.cpu_percent === null
            ? '—'
            : `${kernel.cpu_percent.toFixed(1)}%`,
          'mlc-kernel-cpu'
        ),
        h.span(
          { className: 'mlc-field mlc-field-bar' },
          h.span({ className: 'mlc-field-label' }, 'Memory'),
          bar(memory, memoryText, 'mlc-kernel-memory')
        )
      ),
      ...kids(
        kernel.death &&
          message(
            'error',
            'mlc-kernel-death',
            kernel.death.oom_killed ? 'Out of memory: ' : 'Died: ',
            kernel.death.message,
            ` (exit code ${kernel.death.exit_code})`
          )
      ),
      h.div(
        { className: 'mlc-actions' },
        ...kids(
          !kernel.death &&
            button('Freeze', () => void this.actions.freeze(kernel), {
              testid: 'mlc-freeze',
              title:
                'Write a Dockerfile and requirements reproducing this kernel',
              disabled: this.model.isBusy(`freeze:${kernel.kernel_id}`)
            })
        ),
        button('Stop', () => void this.actions.stopKernel(kernel), {
          testid: 'mlc-kernel-stop',
          title: 'Stop this kernel and its container',
          className: 'mlc-button-danger',
          disabled: stopping
        })
      )
    );
  }
}
