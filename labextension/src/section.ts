/**
 * Base of the panel's four sections: a heading, optional static controls and
 * a body re-rendered (virtual DOM, keyed rows) whenever the model changes.
 * The base shows the loading and error messages (the same way in every
 * section); a section renders only its data. Buttons execute the extension's
 * commands.
 */
import { TranslationBundle } from '@jupyterlab/translation';
import { CommandRegistry } from '@lumino/commands';
import { Message } from '@lumino/messaging';
import { VirtualDOM, VirtualElement } from '@lumino/virtualdom';
import { Widget } from '@lumino/widgets';

import { MLContainerModel } from './model';
import { message } from './ui';

export abstract class Section<T = unknown> extends Widget {
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

  /** The section's data in the model, with its error and loading texts. */
  protected abstract state(): Section.IState<T>;

  /**
   * The body's content for the data; `stale` when the last request failed
   * (the data is then the last good answer, shown under the error).
   */
  protected abstract render(data: T, stale: boolean): VirtualElement[];

  /** Content above the error and loading messages, shown in every state. */
  protected renderHead(): VirtualElement[] {
    return [];
  }

  /** Whether a failed request failed because the Docker engine is down. */
  protected engineDown(httpStatus: number | undefined): boolean {
    return httpStatus === 503 || this.model.engineReachable === false;
  }

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
      content = this._content();
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

  /** The error (above any data), then the data, or else the loading message. */
  private _content(): VirtualElement[] {
    const { data, error, loading } = this.state();
    const out = this.renderHead();
    if (error) {
      out.push(message('error', `mlc-${this._key}-error`, error));
    }
    if (data === null) {
      // Without data, an error says all there is to say.
      if (!error) {
        out.push(message('info', `mlc-${this._key}-loading`, loading));
      }
      return out;
    }
    out.push(...this.render(data, !!error));
    return out;
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

  /** What a section's data allows it to show (see `state`). */
  export interface IState<T> {
    /** The data to render; null before the first answer, or after a 503. */
    data: T | null;
    /** Why the last request failed (translated); null when it succeeded. */
    error: string | null;
    /** Shown while there is neither data nor error (translated). */
    loading: string;
  }
}
