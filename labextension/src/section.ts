/**
 * Base of the panel's four sections: a heading, optional static controls and
 * a body re-rendered (virtual DOM, keyed rows) whenever the model changes.
 */
import { Message } from '@lumino/messaging';
import { VirtualDOM, VirtualElement } from '@lumino/virtualdom';
import { Widget } from '@lumino/widgets';

import { IPanelActions } from './actions';
import { MLContainerModel } from './model';
import { message } from './ui';

export abstract class Section extends Widget {
  constructor(options: Section.IOptions) {
    super();
    this.model = options.model;
    this.actions = options.actions;
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
  readonly actions: IPanelActions;
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
          `Cannot show this section: ${error}`
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
    actions: IPanelActions;
    /** Used in CSS classes and test ids: images, kernels, gpus, volumes. */
    key: string;
    /** The heading. */
    title: string;
  }
}
