/**
 * The "ML Containers" sidebar panel: a header with refresh, the status banner
 * and the four sections (Images, Kernels, GPUs, Volumes). Its buttons execute
 * the extension's commands (see commands.ts).
 */
import { TranslationBundle } from '@jupyterlab/translation';
import { refreshIcon } from '@jupyterlab/ui-components';
import { CommandRegistry } from '@lumino/commands';
import { Message } from '@lumino/messaging';
import { Panel, Widget } from '@lumino/widgets';

import { StatusBanner } from './banner';
import { GpusSection } from './gpusSection';
import { containerIcon } from './icons';
import { ImagesSection } from './imagesSection';
import { KernelsSection } from './kernelsSection';
import { MLContainerModel } from './model';
import { CommandIDs } from './tokens';
import { VolumesSection } from './volumesSection';

export const PANEL_ID = 'mlcontainer-panel';

export class MLContainerPanel extends Panel {
  constructor(options: MLContainerPanel.IOptions) {
    super();
    const { model, trans } = options;
    this.model = model;
    this._commands = options.commands;
    this._trans = trans;
    this.id = PANEL_ID;
    this.addClass('mlc-panel');
    this.node.dataset.testid = PANEL_ID;
    this.title.icon = containerIcon;
    this.title.caption = trans.__('ML Containers');
    this.title.label = '';

    this._header = new Widget({ node: this._buildHeader() });
    this._header.addClass('mlc-header');
    this.addWidget(this._header);
    this.addWidget(new StatusBanner(model, trans));

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
    title.textContent = this._trans.__('ML Containers');

    this._updated = document.createElement('span');
    this._updated.className = 'mlc-updated';
    this._updated.dataset.testid = 'mlc-updated';

    const refresh = document.createElement('button');
    refresh.type = 'button';
    refresh.className = 'jp-Button jp-mod-minimal mlc-refresh';
    refresh.title = this._trans.__('Refresh now');
    refresh.setAttribute('aria-label', this._trans.__('Refresh'));
    refresh.dataset.testid = 'mlc-refresh';
    refreshIcon.element({ container: refresh, elementPosition: 'center' });
    refresh.addEventListener('click', () => {
      refresh.classList.add('mlc-spinning');
      void this._commands
        .execute(CommandIDs.refresh)
        .catch(() => undefined)
        .finally(() => refresh.classList.remove('mlc-spinning'));
    });

    node.append(title, this._updated, refresh);
    return node;
  }

  private _onModelChanged(): void {
    const last = this.model.lastUpdate;
    const seconds = String(this.model.interval / 1000);
    this._updated.textContent = last ? last.toLocaleTimeString() : '';
    this._updated.title = last
      ? this._trans.__(
          'Last updated %1; refreshed every %2 s while shown',
          last.toLocaleString(),
          seconds
        )
      : '';
    // The `pollInterval` setting in effect (seconds), for tests and styling.
    this._updated.dataset.interval = seconds;
  }

  private _commands: CommandRegistry;
  private _trans: TranslationBundle;
  private _header: Widget;
  private _updated!: HTMLElement;
}

export namespace MLContainerPanel {
  export interface IOptions {
    model: MLContainerModel;
    /** Where the buttons' commands are registered (the app's). */
    commands: CommandRegistry;
    trans: TranslationBundle;
  }
}
