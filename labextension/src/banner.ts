/**
 * The banner at the top of the panel: whether the server extension and the
 * Docker engine answer, and what to do when they do not.
 */
import { TranslationBundle } from '@jupyterlab/translation';
import { h, VirtualDOM, VirtualElement } from '@lumino/virtualdom';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { MLContainerModel } from './model';
import { ICluster } from './tokens';
import { field, kids, message } from './ui';
import { formatBytes } from './format';

export class StatusBanner extends Widget {
  constructor(
    private readonly _model: MLContainerModel,
    private readonly _trans: TranslationBundle
  ) {
    super();
    this.addClass('mlc-banner');
    this.node.dataset.testid = 'mlc-banner';
    _model.changed.connect(this.update, this);
  }

  protected onUpdateRequest(msg: Message): void {
    VirtualDOM.render(this._render(), this.node);
  }

  protected onAfterShow(msg: Message): void {
    this.update();
  }

  private _render(): VirtualElement[] {
    const model = this._model;
    const trans = this._trans;
    if (model.loading) {
      return [
        message('info', 'mlc-loading', trans.__('Connecting to the server…'))
      ];
    }
    const { data, error } = model.status;
    if (error) {
      return [
        message(
          'error',
          'mlc-server-error',
          trans.__(
            'The jupyter-mlcontainer server extension does not answer (GET mlcontainer/api/status): %1',
            error
          )
        ),
        message(
          'hint',
          'mlc-server-error-hint',
          trans.__(
            'Check that it is installed and enabled (jupyter server extension list), then restart Jupyter.'
          )
        )
      ];
    }
    if (model.engineReachable === false || (data && !data.engine.reachable)) {
      return [
        message(
          'error',
          'mlc-engine-down',
          h.strong(
            {},
            trans.__(
              'Docker engine not reachable: is dockerd running and is your user in the docker group?'
            )
          ),
          ...kids(
            model.engineReason &&
              h.div({ className: 'mlc-reason' }, model.engineReason)
          )
        )
      ];
    }
    if (!data) {
      return [];
    }
    const engine = data.engine;
    const spares = data.warm_pool?.spares ?? [];
    return [
      h.div(
        {
          className: 'mlc-row-meta mlc-engine-ok',
          dataset: { testid: 'mlc-engine-ok' }
        },
        field(
          engine.kind ?? trans.__('Docker'),
          engine.version ?? trans.__('reachable')
        ),
        ...kids(
          engine.storage_warning &&
            h.span(
              {
                className: 'mlc-storage-slow',
                title: engine.storage_warning,
                dataset: { testid: 'mlc-engine-storage' }
              },
              field(
                trans.__('Storage'),
                trans.__('%1 (slow starts)', engine.storage_driver ?? '')
              )
            ),
          spares.length > 0 &&
            h.span(
              {
                title: spares
                  .map(s =>
                    trans.__(
                      '%1 (%2): %3',
                      s.kernelspec ?? '',
                      s.image ?? '',
                      formatBytes(s.memory_usage)
                    )
                  )
                  .join('\n'),
                dataset: { testid: 'mlc-spares' }
              },
              field(
                trans.__('Warm spares'),
                trans.__(
                  '%1 (%2)',
                  String(spares.length),
                  formatBytes(
                    spares.reduce((sum, s) => sum + (s.memory_usage ?? 0), 0)
                  )
                )
              )
            ),
          engine.nvidia_runtime !== undefined &&
            field(
              trans.__('NVIDIA runtime'),
              engine.nvidia_runtime ? trans.__('yes') : trans.__('no')
            ),
          data.nvml.available &&
            field(trans.__('GPUs'), String(data.nvml.gpu_count)),
          ...(data.clusters ?? []).map(cluster => this._cluster(cluster))
        )
      ),
      ...(engine.storage_warning
        ? [
            message(
              'warning',
              'mlc-engine-storage-warning',
              h.div({}, engine.storage_warning),
              engine.storage_fix &&
                h.div(
                  {
                    className: 'mlc-reason',
                    dataset: { testid: 'mlc-engine-storage-fix' }
                  },
                  trans.__('Fix: %1', engine.storage_fix)
                )
            )
          ]
        : [])
    ];
  }

  /** A Swarm in one field: nodes ready and GPUs free; each node in the tooltip. */
  private _cluster(cluster: ICluster): VirtualElement {
    const trans = this._trans;
    if (cluster.reachable === false || !cluster.nodes) {
      return h.span(
        { title: cluster.reason ?? '', dataset: { testid: 'mlc-cluster' } },
        field(trans.__('Swarm'), trans.__('not reachable'))
      );
    }
    const nodes = cluster.nodes;
    const ready = nodes.filter(n => n.state === 'ready').length;
    const gpus = nodes.reduce((sum, n) => sum + n.gpus.length, 0);
    const free = nodes.reduce(
      (sum, n) => sum + n.gpus.filter(g => !g.kernel_id).length,
      0
    );
    return h.span(
      {
        title: nodes
          .map(n =>
            trans.__(
              '%1 (%2, %3): %4 GPUs',
              n.hostname,
              n.role,
              n.state,
              String(n.gpus.length)
            )
          )
          .join('\n'),
        dataset: { testid: 'mlc-cluster' }
      },
      field(
        trans.__('Swarm'),
        trans.__(
          '%1/%2 nodes ready, %3/%4 GPUs free',
          String(ready),
          String(nodes.length),
          String(free),
          String(gpus)
        )
      )
    );
  }
}
