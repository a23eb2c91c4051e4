/**
 * Base of the panel's four sections: a heading, optional static controls and
 * a body re-rendered (virtual DOM, keyed rows) whenever the model changes.
 * Buttons execute the extension's commands.
 */
import { TranslationBundle } from '@jupyterlab/translation';
import { CommandRegistry } from '@lumino/commands';
import { Message } from '@lumino/messaging';
import { VirtualDOM, VirtualElement } from '@lumino/virtualdom';
import { Widget } from '@lumino/widgets';

import { MLContainerModel } from './model';
import { message } from './ui';

export abstract class Section extends Widget {
  constructor(options: Section.IOptions) {
    super();
    this.model = options.model;
    this.commands = options.commands;
    this.trans = options.trans;
    this._key = options.key;
    this.addClass('mlc-section');
    this.addClass(`mlc-section-${options.key}`);
    this.node.dataset.testid = `mlc-section-${options.key}`;

    const header = document.createElement('div');
    header.className = 'mlc-section-header';
    const heading = document.createElement('h3');
    heading.className = 'mlc-section-title';
    heading.textContent = options.title;
    this._count = document.createElement('span');
    this._count.className = 'mlc-section-count';
    this._count.dataset.testid = `mlc-${options.key}-count`;
    header.append(heading, this._count);
    this.node.appendChild(header);

    this.controls = document.createElement('div');
    this.controls.className = 'mlc-section-controls';
    this.node.appendChild(this.controls);

    this._body = document.createElement('div');
    this._body.className = 'mlc-section-body';
    this.node.appendChild(this._body);

    this.model.changed.connect(this.update, this);
  }

  readonly model: MLContainerModel;
  /** What the buttons execute (see commands.ts). */
  readonly commands: CommandRegistry;
  readonly trans: TranslationBundle;
  /** Static (never re-rendered) controls above the body, e.g. a form. */
  protected readonly controls: HTMLElement;

  /** The body's content for the model's current state. */
  protected abstract render(): VirtualElement[];

  /** The number shown next to the heading (null: none). */
  protected count(): number | null {
    return null;
  }

  protected onUpdateRequest(msg: Message): void {
    if (!this.isVisible) {
      return;
    }
    const count = this.count();
    this._count.textContent = count === null ? '' : String(count);
    let content: VirtualElement[];
    try {
      content = this.render();
    } catch (error) {
      // An unexpected answer must not blank the whole panel.
      console.error(`jupyter-mlcontainer: cannot render ${this._key}`, error);
      content = [
        message(
          'error',
          `mlc-${this._key}-render-error`,
          this.trans.__('Cannot show this section: %1', String(error))
        )
      ];
    }
    VirtualDOM.render(content, this._body);
  }

  protected onAfterShow(msg: Message): void {
    this.update();
  }

  private _key: string;
  private _body: HTMLElement;
  private _count: HTMLElement;
}

export namespace Section {
  export interface IOptions {
    model: MLContainerModel;
    commands: CommandRegistry;
    trans: TranslationBundle;
    /** Used in CSS classes and test ids: images, kernels, gpus, volumes. */
    key: string;
    /** The heading (translated). */
    title: string;
  }
}
