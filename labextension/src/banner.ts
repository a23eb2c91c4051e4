/**
 * The banner at the top of the panel: whether the server extension and the
 * Docker engine answer, and what to do when they do not.
 */
import { h, VirtualDOM, VirtualElement } from '@lumino/virtualdom';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { MLContainerModel } from './model';
import { field, kids, message } from './ui';

export const ENGINE_DOWN =
  'Docker engine not reachable: is dockerd running and is your user in the docker group?';

export class StatusBanner extends Widget {
  constructor(private readonly _model: MLContainerModel) {
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
    if (model.loading) {
      return [message('info', 'mlc-loading', 'Connecting to the server…')];
    }
    const { data, error } = model.status;
    if (error) {
      return [
        message(
          'error',
          'mlc-server-error',
          `The jupyter-mlcontainer server extension does not answer (GET mlcontainer/api/status): ${error}`
        ),
        message(
          'hint',
          'mlc-server-error-hint',
          'Check that it is installed and enabled (jupyter server extension list), then restart Jupyter.'
        )
      ];
    }
    if (model.engineReachable === false || (data && !data.engine.reachable)) {
      return [
        message(
          'error',
          'mlc-engine-down',
          h.strong({}, ENGINE_DOWN),
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
    return [
      h.div(
        {
          className: 'mlc-row-meta mlc-engine-ok',
          dataset: { testid: 'mlc-engine-ok' }
        },
        field('Docker', engine.version ?? 'reachable'),
        ...kids(
          engine.nvidia_runtime !== undefined &&
            field('NVIDIA runtime', engine.nvidia_runtime ? 'yes' : 'no'),
          data.nvml.available && field('GPUs', String(data.nvml.gpu_count))
        )
      )
    ];
  }
}
