/**
 * Status-bar item: the image and GPUs of the current notebook's (or
 * console's) kernel when it runs in a container, matched by kernel id against
 * the model's kernels. It has no poll of its own: while the current kernel may
 * run in a container, it asks the model to keep the kernels fresh.
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { ISessionContext } from '@jupyterlab/apputils';
import { KernelSpec } from '@jupyterlab/services';
import { TranslationBundle } from '@jupyterlab/translation';
import { IDisposable } from '@lumino/disposable';
import { Message } from '@lumino/messaging';
import { ISignal, Signal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';

import { shortId } from './format';
import { containerIcon } from './icons';
import { MLContainerModel } from './model';
import { IContainerKernel } from './tokens';

/** The kernel provisioner of container kernelspecs (see kernelspecs.py). */
export const PROVISIONER_NAME = 'mlcontainer-docker';

/**
 * Whether a kernelspec may run in a container: true for specs using our
 * provisioner, and when the spec is unknown (then the server decides).
 */
export function mayBeContainerSpec(
  specs: KernelSpec.ISpecModels | null | undefined,
  name: string | undefined
): boolean {
  const spec = name ? specs?.kernelspecs[name] : undefined;
  if (!spec) {
    return true;
  }
  const provisioner = spec.metadata?.kernel_provisioner as
    { provisioner_name?: string } | undefined;
  return provisioner?.provisioner_name === PROVISIONER_NAME;
}

/**
 * The session context of a notebook (or console) widget, if it has one. Any
 * widget with a session context counts (consoles too), so this is not limited
 * to the notebook tracker's widgets.
 */
function sessionContextOf(widget: Widget | null): ISessionContext | null {
  const candidate = (widget as { sessionContext?: ISessionContext } | null)
    ?.sessionContext;
  return candidate &&
    typeof candidate === 'object' &&
    'kernelChanged' in candidate
    ? candidate
    : null;
}

export class ContainerKernelStatus extends Widget {
  constructor(options: ContainerKernelStatus.IOptions) {
    super();
    this._shell = options.shell;
    this._model = options.model;
    this._trans = options.trans;
    this._specs = options.kernelspecs ?? null;
    this.addClass('mlc-statusbar');
    this.addClass('jp-StatusBar-TextItem');
    this.node.dataset.testid = 'mlc-statusbar';

    const icon = document.createElement('span');
    icon.className = 'mlc-statusbar-icon';
    containerIcon.element({ container: icon, height: '14px', width: '14px' });
    this._text = document.createElement('span');
    this._text.className = 'mlc-statusbar-text';
    this.node.append(icon, this._text);
    if (options.onClick) {
      const onClick = options.onClick;
      this.node.addEventListener('click', () => onClick());
    }

    this._shell.currentChanged?.connect(this._onCurrentChanged, this);
    this._model.changed.connect(this._match, this);
    this._onCurrentChanged();
  }

  /** Emitted when the item should be shown or hidden. */
  get activeStateChanged(): ISignal<this, void> {
    return this._activeStateChanged;
  }

  /** Whether the current widget's kernel runs in a container. */
  get isActive(): boolean {
    return this._kernel !== null;
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._watch?.dispose();
    this._watch = null;
    this._watchSession(null);
    Signal.clearData(this);
    super.dispose();
  }

  protected onUpdateRequest(msg: Message): void {
    const kernel = this._kernel;
    if (!kernel) {
      this._text.textContent = '';
      this.node.title = '';
      return;
    }
    const trans = this._trans;
    const gpus =
      !kernel.gpus || kernel.gpus === 'none'
        ? trans.__('no GPU')
        : trans.__('GPU %1', kernel.gpus);
    this._text.textContent = `${kernel.image} · ${gpus}`;
    this.node.title = [
      trans.__('Kernel runs in container %1', shortId(kernel.container_id)),
      trans.__('Image: %1', kernel.image),
      trans.__('GPUs: %1', kernel.gpus || trans.__('none')),
      trans.__('State: %1', kernel.state),
      ...(kernel.death ? [trans.__('Died: %1', kernel.death.message)] : [])
    ].join('\n');
    this.node.dataset.state = kernel.state;
  }

  /** The current widget's kernel id, null unless it may be a container one. */
  private _kernelId(): string | null {
    // Shells without currentChanged (e.g. single-document apps): look again.
    if (!this._shell.currentChanged) {
      this._watchSession(sessionContextOf(this._shell.currentWidget));
    }
    const kernel = this._session?.session?.kernel;
    if (!kernel || !mayBeContainerSpec(this._specs?.specs, kernel.name)) {
      return null;
    }
    return kernel.id;
  }

  private _onCurrentChanged(): void {
    this._watchSession(sessionContextOf(this._shell.currentWidget));
    this._onKernelChanged();
  }

  private _watchSession(session: ISessionContext | null): void {
    if (session === this._session) {
      return;
    }
    this._session?.kernelChanged.disconnect(this._onKernelChanged, this);
    this._session = session;
    this._session?.kernelChanged.connect(this._onKernelChanged, this);
  }

  private _onKernelChanged(): void {
    this._match();
  }

  /**
   * Find the current kernel among the model's container kernels; show or
   * hide. While the current kernel may run in a container, have the model
   * keep the kernels fresh (it fetches them at once for a new kernel).
   */
  private _match(): void {
    const id = this._kernelId();
    if (id !== this._watchedId) {
      this._watch?.dispose();
      this._watch = id === null ? null : this._model.watchKernels();
      this._watchedId = id;
    }
    const kernels: IContainerKernel[] = this._model.kernels.data ?? [];
    const kernel =
      id === null ? null : (kernels.find(k => k.kernel_id === id) ?? null);
    const wasActive = this.isActive;
    this._kernel = kernel;
    if (wasActive !== this.isActive) {
      this._activeStateChanged.emit();
    }
    this.update();
  }

  private _shell: JupyterFrontEnd.IShell;
  private _specs: KernelSpec.IManager | null;
  private _model: MLContainerModel;
  private _trans: TranslationBundle;
  private _text: HTMLElement;
  private _session: ISessionContext | null = null;
  /** The model keeping kernels fresh for `_watchedId`, while it may be one. */
  private _watch: IDisposable | null = null;
  private _watchedId: string | null = null;
  private _kernel: IContainerKernel | null = null;
  private _activeStateChanged = new Signal<this, void>(this);
}

export namespace ContainerKernelStatus {
  export interface IOptions {
    shell: JupyterFrontEnd.IShell;
    model: MLContainerModel;
    trans: TranslationBundle;
    /** To tell container kernelspecs from others without asking the server. */
    kernelspecs?: KernelSpec.IManager;
    /** What a click does (e.g. open the panel). */
    onClick?: () => void;
  }
}
