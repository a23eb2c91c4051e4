/**
 * "GPUs": one row per GPU with utilisation and memory bars, temperature,
 * power, and the notebooks whose kernels use it; or why there is none.
 */
import { h, VirtualElement } from '@lumino/virtualdom';

import { formatBytes, ratio } from './format';
import { Section } from './section';
import { IClusterGpu, IGpu, IGpus } from './tokens';
import { bar, chip, field, kids, message } from './ui';

export class GpusSection extends Section<IGpus> {
  constructor(options: Omit<Section.IOptions, 'key' | 'title'>) {
    super({ ...options, key: 'gpus', title: options.trans.__('GPUs') });
  }

  protected count(): number | null {
    const data = this.model.gpus.data;
    return data && data.available ? data.gpus.length : null;
  }

  protected state(): Section.IState<IGpus> {
    const trans = this.trans;
    const { data, error } = this.model.gpus;
    return {
      data,
      // One text for every error: the model does not count the GPUs among
      // the routes that tell whether the engine is down.
      error: error ? trans.__('Could not read the GPUs: %1', error) : null,
      loading: trans.__('Loading GPUs…')
    };
  }

  protected render(data: IGpus, stale: boolean): VirtualElement[] {
    const trans = this.trans;
    const out: VirtualElement[] = [];
    if (data.clusters && data.clusters.length > 0) {
      out.push(this._cluster(data.clusters));
    }
    if (!data.available || data.gpus.length === 0) {
      out.push(
        message(
          'hint',
          'mlc-gpu-unavailable',
          data.reason || trans.__('No GPU found.')
        ),
        message(
          'hint',
          'mlc-gpu-unavailable-hint',
          trans.__(
            'Kernels still run on the CPU. For GPUs: install the NVIDIA driver and the NVIDIA Container Toolkit on the host.'
          )
        )
      );
      return out;
    }
    const runtime = this.model.status.data?.engine.nvidia_runtime;
    out.push(
      h.div(
        {
          className: 'mlc-row-meta mlc-gpu-driver',
          dataset: { testid: 'mlc-gpu-driver' }
        },
        ...kids(
          data.driver_version &&
            field(trans.__('Driver'), data.driver_version),
          data.cuda_driver_version &&
            field(trans.__('CUDA driver'), data.cuda_driver_version)
        )
      )
    );
    if (runtime === false) {
      out.push(
        message(
          'warning',
          'mlc-gpu-no-runtime',
          trans.__(
            'Docker has no NVIDIA runtime: containers cannot use these GPUs. Install the NVIDIA Container Toolkit and restart dockerd.'
          )
        )
      );
    }
    out.push(
      h.div(
        { className: `mlc-rows${stale ? ' mlc-stale' : ''}` },
        ...data.gpus.map(gpu => this._row(gpu))
      )
    );
    return out;
  }

  /** The Swarm nodes' GPUs: node, GPU, and the notebook (or kernel) holding it, or free. */
  private _cluster(gpus: IClusterGpu[]): VirtualElement {
    const trans = this.trans;
    return h.div(
      { className: 'mlc-rows', dataset: { testid: 'mlc-cluster-gpus' } },
      ...gpus.map(gpu =>
        h.div(
          {
            key: `${gpu.manager} ${gpu.node} ${gpu.id}`,
            className: 'mlc-row mlc-gpu-row',
            dataset: { testid: 'mlc-cluster-gpu-row' }
          },
          h.div(
            { className: 'mlc-row-head' },
            chip(gpu.node, `mlc-chip-node mlc-state-${gpu.node_state}`, gpu.manager),
            h.span({ className: 'mlc-gpu-name' }, gpu.id)
          ),
          h.div(
            { className: 'mlc-row-meta' },
            h.span({ className: 'mlc-field-label' }, trans.__('Used by')),
            gpu.kernel_id
              ? chip(
                  gpu.notebook_path ??
                    trans.__('kernel %1', gpu.kernel_id.slice(0, 8)),
                  'mlc-chip-notebook'
                )
              : h.span({ className: 'mlc-muted' }, trans.__('free'))
          )
        )
      )
    );
  }

  private _row(gpu: IGpu): VirtualElement {
    const trans = this.trans;
    const util =
      gpu.utilization_gpu === null ? null : gpu.utilization_gpu / 100;
    const memory = ratio(gpu.memory_used, gpu.memory_total);
    const memoryText =
      gpu.memory_used === null
        ? '—'
        : `${formatBytes(gpu.memory_used)} / ${formatBytes(gpu.memory_total)}`;
    const power =
      gpu.power_usage === null
        ? '—'
        : gpu.power_limit
          ? `${Math.round(gpu.power_usage)} / ${Math.round(gpu.power_limit)} W`
          : `${Math.round(gpu.power_usage)} W`;
    const notebooks = new Map<string, string>();
    for (const proc of gpu.processes) {
      const label =
        proc.notebook_path ??
        (proc.kernel_id
          ? trans.__('kernel %1', proc.kernel_id.slice(0, 8))
          : null);
      if (label) {
        notebooks.set(label, proc.notebook_path ?? '');
      }
    }
    const others = gpu.processes.filter(
      p => !p.notebook_path && !p.kernel_id
    ).length;

    return h.div(
      {
        key: gpu.uuid || String(gpu.index),
        className: 'mlc-row mlc-gpu-row',
        dataset: { testid: 'mlc-gpu-row', index: String(gpu.index) }
      },
      h.div(
        { className: 'mlc-row-head' },
        chip(String(gpu.index), 'mlc-chip-index', gpu.uuid),
        h.span({ className: 'mlc-gpu-name', title: gpu.uuid }, gpu.name),
        ...kids(gpu.mig_mode === true && chip(trans.__('MIG'), 'mlc-chip-mig'))
      ),
      h.div(
        { className: 'mlc-row-meta mlc-usage' },
        h.span(
          { className: 'mlc-field mlc-field-bar' },
          h.span({ className: 'mlc-field-label' }, trans.__('Util')),
          bar(
            util,
            util === null ? '—' : `${gpu.utilization_gpu}%`,
            'mlc-gpu-util'
          )
        ),
        h.span(
          { className: 'mlc-field mlc-field-bar' },
          h.span({ className: 'mlc-field-label' }, trans.__('Memory')),
          bar(memory, memoryText, 'mlc-gpu-memory')
        )
      ),
      h.div(
        { className: 'mlc-row-meta' },
        field(
          trans.__('Temp'),
          gpu.temperature === null ? '—' : `${gpu.temperature} °C`,
          'mlc-gpu-temperature'
        ),
        field(trans.__('Power'), power, 'mlc-gpu-power')
      ),
      h.div(
        { className: 'mlc-row-meta', dataset: { testid: 'mlc-gpu-notebooks' } },
        h.span({ className: 'mlc-field-label' }, trans.__('Used by')),
        ...(notebooks.size > 0
          ? [...notebooks.entries()].map(([label, path]) =>
              path
                ? h.a(
                    {
                      className: 'mlc-chip mlc-chip-notebook',
                      href: '#',
                      title: trans.__('Open %1', path),
                      onclick: (event: MouseEvent) => {
                        event.preventDefault();
                        void this.commands.execute('docmanager:open', { path });
                      }
                    },
                    label
                  )
                : chip(label, 'mlc-chip-notebook')
            )
          : [
              h.span(
                { className: 'mlc-muted' },
                others > 0 ? '' : trans.__('no notebook')
              )
            ]),
        ...kids(
          others > 0 &&
            h.span(
              { className: 'mlc-muted' },
              trans._n('%1 other process', '%1 other processes', others)
            )
        )
      )
    );
  }
}
