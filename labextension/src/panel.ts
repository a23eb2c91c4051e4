/**
 * The "ML Containers" sidebar panel: a header with refresh, the status banner
 * and the four sections (Images, Kernels, GPUs, Volumes).
 */
import { refreshIcon } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import { Panel, Widget } from '@lumino/widgets';

import { IPanelActions } from './actions';
import { StatusBanner } from './banner';
import { GpusSection } from './gpusSection';
import { containerIcon } from './icons';
import { ImagesSection } from './imagesSection';
import { KernelsSection } from './kernelsSection';
import { MLContainerModel } from './model';
import { VolumesSection } from './volumesSection';

export const PANEL_ID = 'mlcontainer-panel';

export class MLContainerPanel extends Panel {
  constructor(options: { model: MLContainerModel; actions: IPanelActions }) {
    super();
    const { model } = options;
    this.model = model;
    this.id = PANEL_ID;
    this.addClass('mlc-panel');
    this.node.dataset.testid = PANEL_ID;
    this.title.icon = containerIcon;
    this.title.caption = 'ML Containers';
    this.title.label = '';

    this._header = new Widget({ node: this._buildHeader() });
    this._header.addClass('mlc-header');
    this.addWidget(this._header);
    this.addWidget(new StatusBanner(model));

    const content = new Panel();
    content.addClass('mlc-content');
    content.addWidget(new ImagesSection(options));
    content.addWidget(new KernelsSection(options));
    content.addWidget(new GpusSection(options));
    content.addWidget(new VolumesSection(options));
    this.addWidget(content);

    model.changed.connect(this._onModelChanged, this);
  }

  readonly model: MLContainerModel;

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this.model.active = false;
    super.dispose();
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this.model.active = true;
  }

  protected onAfterHide(msg: Message): void {
    super.onAfterHide(msg);
    this.model.active = false;
  }

  private _buildHeader(): HTMLElement {
    const node = document.createElement('div');
    const title = document.createElement('h2');
    title.className = 'mlc-title';
    title.textContent = 'ML Containers';

    this._updated = document.createElement('span');
    this._updated.className = 'mlc-updated';
    this._updated.dataset.testid = 'mlc-updated';

    const refresh = document.createElement('button');
    refresh.type = 'button';
    refresh.className = 'jp-Button jp-mod-minimal mlc-refresh';
    refresh.title = 'Refresh now';
    refresh.setAttribute('aria-label', 'Refresh');
    refresh.dataset.testid = 'mlc-refresh';
    refreshIcon.element({ container: refresh, elementPosition: 'center' });
    refresh.addEventListener('click', () => {
      refresh.classList.add('mlc-spinning');
      void this.model
        .refresh()
        .catch(() => undefined)
        .finally(() => refresh.classList.remove('mlc-spinning'));
    });

    node.append(title, this._updated, refresh);
    return node;
  }

  private _onModelChanged(): void {
    const last = this.model.lastUpdate;
    this._updated.textContent = last ? last.toLocaleTimeString() : '';
    this._updated.title = last ? `Last updated ${last.toLocaleString()}` : '';
  }

  private _header: Widget;
  private _updated!: HTMLElement;
}
