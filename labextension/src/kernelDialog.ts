/**
 * The body of the "Add as kernel" dialog: display name and GPUs, both optional
 * (empty lets the server choose its defaults).
 */
import { Dialog } from '@jupyterlab/apputils';
import { TranslationBundle } from '@jupyterlab/translation';
import { Widget } from '@lumino/widgets';

import { IKernelspecRequest } from './tokens';

export class KernelDialogBody
  extends Widget
  implements Dialog.IBodyWidget<IKernelspecRequest>
{
  constructor(options: KernelDialogBody.IOptions) {
    super();
    const trans = options.trans;
    this._image = options.image;
    this.addClass('mlc-kernel-dialog');
    this.node.dataset.testid = 'mlc-kernel-dialog';

    this._display = this._input(
      trans.__('Display name'),
      trans.__('%1 (container)', options.imageName),
      'mlc-kernel-dialog-display-name'
    );
    this._gpus = this._input(
      trans.__('GPUs'),
      options.gpuCount > 0
        ? trans.__('server default; all, none, 1, or 0,1')
        : trans.__('no GPU on this host: none'),
      'mlc-kernel-dialog-gpus'
    );
    const hint = document.createElement('p');
    hint.className = 'mlc-kernel-dialog-hint';
    hint.textContent = trans.__(
      'Image: %1. Leave fields empty for the defaults.',
      options.image
    );
    this.node.appendChild(hint);
  }

  getValue(): IKernelspecRequest {
    const request: IKernelspecRequest = { image: this._image };
    const display = this._display.value.trim();
    const gpus = this._gpus.value.trim();
    if (display) {
      request.display_name = display;
    }
    if (gpus) {
      request.gpus = gpus;
    }
    return request;
  }

  protected onAfterAttach(): void {
    this._display.focus();
  }

  private _input(
    label: string,
    placeholder: string,
    testid: string
  ): HTMLInputElement {
    const wrapper = document.createElement('label');
    wrapper.className = 'mlc-kernel-dialog-field';
    const text = document.createElement('span');
    text.textContent = label;
    const input = document.createElement('input');
    input.className = 'jp-mod-styled';
    input.placeholder = placeholder;
    input.dataset.testid = testid;
    wrapper.append(text, input);
    this.node.appendChild(wrapper);
    return input;
  }

  private _image: string;
  private _display: HTMLInputElement;
  private _gpus: HTMLInputElement;
}

export namespace KernelDialogBody {
  export interface IOptions {
    /** The image reference sent to the server. */
    image: string;
    /** Its human name (first tag or short id). */
    imageName: string;
    /** GPUs NVML sees, to word the GPUs hint. */
    gpuCount: number;
    trans: TranslationBundle;
  }
}
