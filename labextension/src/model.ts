/**
 * The extension's data: everything the REST API reports, refreshed by one
 * Poll shared by the panel, the status bar and the job notifications.
 *
 * While the panel shows, each tick fetches everything (images and volumes
 * every SLOW_EVERY ticks). While it is hidden, the poll stands by unless
 * something else needs fresh data: the status bar (kernels, see
 * `watchKernels`) or a pull/build started here that still runs (jobs, so that
 * its progress and end still arrive); then a tick fetches only that. The poll
 * backs off while the server or the Docker engine fails.
 */
import { ServerConnection } from '@jupyterlab/services';
import { nullTranslator, TranslationBundle } from '@jupyterlab/translation';
import { DisposableDelegate, IDisposable } from '@lumino/disposable';
import { IPoll, Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

import { MLContainerAPI } from './api';
import { errorMessage, errorStatus } from './format';
import {
  IBuildRequest,
  IContainerKernel,
  IFreezeResult,
  IGpus,
  IImage,
  IJob,
  IKernelspec,
  IKernelspecRequest,
  IStatus,
  IVolumes
} from './tokens';

/** The last answer for one route, or the error that replaced it. */
export interface IResource<T> {
  /** Last good data (kept while a later request fails, except with 503). */
  data: T | null;
  /** Error of the last request, null when it succeeded. */
  error: string | null;
  /** HTTP status of that error when the server answered (503: engine down). */
  httpStatus?: number;
}

function empty<T>(): IResource<T> {
  return { data: null, error: null };
}

/** Whether a job can still change. */
export function isFinished(job: IJob): boolean {
  return job.state !== 'running';
}

/** Routes that are cheap enough for every tick; the others every SLOW_EVERY. */
const SLOW_EVERY = 5;

/** The poll interval when none is set (ms). */
export const DEFAULT_INTERVAL = 2000;

/** The longest back-off interval (ms). */
const MAX_INTERVAL = 30 * 1000;

export class MLContainerModel implements IDisposable {
  constructor(options: MLContainerModel.IOptions) {
    this.api = new MLContainerAPI(options.serverSettings);
    this._trans = options.trans ?? nullTranslator.load('jupyter_mlcontainer');
    const interval = options.interval ?? DEFAULT_INTERVAL;
    this._poll = new Poll<void, unknown, 'standby'>({
      name: 'jupyter-mlcontainer:model',
      factory: state => this._fetch(state),
      frequency: {
        interval,
        backoff: true,
        max: Math.max(MAX_INTERVAL, interval)
      },
      standby: () => (this._wanted() ? 'when-hidden' : true)
    });
  }

  /** The REST API client, with the app's server connection settings. */
  readonly api: MLContainerAPI;

  /** Emitted after every poll tick and every local change. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** Emitted when a job this client watched running reaches an end state. */
  get jobFinished(): ISignal<this, { job: IJob; startedHere: boolean }> {
    return this._jobFinished;
  }

  get status(): IResource<IStatus> {
    return this._status;
  }
  get images(): IResource<IImage[]> {
    return this._images;
  }
  get kernels(): IResource<IContainerKernel[]> {
    return this._kernels;
  }
  get gpus(): IResource<IGpus> {
    return this._gpus;
  }
  get volumes(): IResource<IVolumes> {
    return this._volumes;
  }

  /** When the last poll ended, null before the first one. */
  get lastUpdate(): Date | null {
    return this._lastUpdate;
  }

  /** True before the first answer arrived. */
  get loading(): boolean {
    return this._lastUpdate === null;
  }

  /** The poll interval in ms (the `pollInterval` setting). */
  get interval(): number {
    return this._poll.frequency.interval;
  }
  set interval(value: number) {
    if (!(value > 0) || value === this.interval) {
      return;
    }
    this._poll.frequency = {
      ...this._poll.frequency,
      interval: value,
      max: Math.max(MAX_INTERVAL, value)
    };
    // Tick now, so that the next ticks follow the new pace at once.
    void this._poll.refresh();
    this._changed.emit();
  }

  /**
   * The Docker engine's state: false when the server says it is not reachable
   * (or answers 503), true when reachable, null when unknown.
   */
  get engineReachable(): boolean | null {
    const status = this._status.data;
    if (this._status.error === null && status) {
      return status.engine.reachable;
    }
    const all = [this._images, this._kernels, this._volumes];
    if (all.some(r => r.httpStatus === 503)) {
      return false;
    }
    return null;
  }

  /** The server's reason for the engine being down, if it gave one. */
  get engineReason(): string {
    const status = this._status.data;
    if (status && status.engine.reason) {
      return status.engine.reason;
    }
    const down = [this._images, this._kernels, this._volumes].find(
      r => r.httpStatus === 503
    );
    return down?.error ?? '';
  }

  /** The pull/build jobs to show: watched here, not dismissed; running first. */
  get jobs(): IJob[] {
    const order = (job: IJob) => (job.state === 'running' ? 0 : 1);
    return [...this._jobs.values()]
      .filter(job => this._watched.has(job.id) && !this._dismissed.has(job.id))
      .sort((a, b) => order(a) - order(b));
  }

  /** Whether an action (e.g. `stop:<kernel id>`) is in progress. */
  isBusy(key: string): boolean {
    return this._busy.has(key);
  }

  /**
   * Whether the panel is showing: then every tick fetches everything; while it
   * is not, the poll fetches only what something else asked for.
   */
  get active(): boolean {
    return this._active;
  }
  set active(value: boolean) {
    if (value === this._active) {
      return;
    }
    this._active = value;
    if (value) {
      void this.refresh();
    }
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    this._poll.dispose();
    Signal.clearData(this);
  }

  /**
   * Keep the kernels fresh while the panel is hidden (the status bar needs
   * them while the current notebook's kernel may run in a container), and
   * fetch them now. Dispose the result when they are no longer needed.
   */
  watchKernels(): IDisposable {
    this._kernelWatchers++;
    void this._poll.refresh();
    return new DisposableDelegate(() => {
      this._kernelWatchers--;
    });
  }

  /** Fetch everything now, even while the panel is hidden. */
  async refresh(): Promise<void> {
    this._everythingNext = true;
    await this._poll.refresh();
    await this._poll.tick;
  }

  /** Start pulling an image; the poll follows the job until it ends. */
  async pull(image: string): Promise<IJob> {
    const job = await this.api.pullImage(image);
    this.track(job);
    return job;
  }

  /** Start building an image; the job is shown and followed like a pull. */
  async build(request: IBuildRequest): Promise<IJob> {
    const job = await this._busyWhile(`build:${request.tag}`, () =>
      this.api.buildImage(request)
    );
    this.track(job);
    return job;
  }

  /** Show and follow a job started here by other means (e.g. a restore). */
  track(job: IJob): void {
    this._startedHere.add(job.id);
    this._dismissed.delete(job.id);
    this._watched.add(job.id);
    this._updateJob(job);
    this._changed.emit();
  }

  /** The latest copy of a job this client knows, if any. */
  job(jobId: string): IJob | undefined {
    return this._jobs.get(jobId);
  }

  /**
   * Resolve with a tracked job once it ended (done, error or cancelled).
   */
  whenFinished(jobId: string): Promise<IJob> {
    const known = this._jobs.get(jobId);
    if (known && isFinished(known)) {
      return Promise.resolve(known);
    }
    return new Promise(resolve => {
      const onFinished = (_: this, args: { job: IJob }) => {
        if (args.job.id === jobId) {
          this._jobFinished.disconnect(onFinished);
          resolve(args.job);
        }
      };
      this._jobFinished.connect(onFinished);
    });
  }

  /** Cancel a job (any client's). */
  async cancel(jobId: string): Promise<void> {
    await this._busyWhile(`cancel:${jobId}`, async () => {
      this._updateJob(await this.api.cancelJob(jobId));
    });
  }

  /** Hide a finished job from the list. */
  dismiss(jobId: string): void {
    this._dismissed.add(jobId);
    this._changed.emit();
  }

  /** Create a kernelspec for an image, then refresh the image list. */
  async addKernelspec(request: IKernelspecRequest): Promise<IKernelspec> {
    const spec = await this._busyWhile(`add:${request.image}`, () =>
      this.api.addKernelspec(request)
    );
    void this._poll.refresh();
    return spec;
  }

  /** Remove an image, then refresh the image list. */
  async removeImage(image: string): Promise<void> {
    await this._busyWhile(`remove:${image}`, () => this.api.removeImage(image));
    this._imagesStale = true;
    void this._poll.refresh();
  }

  /** Remove a container kernelspec, then refresh the image list (it shows kernelspecs). */
  async removeKernelspec(name: string): Promise<void> {
    await this._busyWhile(`remove-spec:${name}`, () =>
      this.api.removeKernelspec(name)
    );
    this._imagesStale = true;
    void this._poll.refresh();
  }

  /** Write a Dockerfile reproducing a kernel (`force`: overwrite). */
  async freeze(kernelId: string, force: boolean): Promise<IFreezeResult> {
    return this._busyWhile(`freeze:${kernelId}`, () =>
      this.api.freezeKernel(kernelId, force)
    );
  }

  /** Stop a container kernel. */
  async stopKernel(kernelId: string): Promise<void> {
    await this._busyWhile(`stop:${kernelId}`, () =>
      this.api.stopKernel(kernelId)
    );
    void this._poll.refresh();
  }

  private async _busyWhile<T>(key: string, fn: () => Promise<T>): Promise<T> {
    this._busy.add(key);
    this._changed.emit();
    try {
      return await fn();
    } finally {
      this._busy.delete(key);
      this._changed.emit();
    }
  }

  /** Whether the poll has anything to fetch (else it stands by). */
  private _wanted(): boolean {
    return (
      this._active ||
      this._everythingNext ||
      this._kernelWatchers > 0 ||
      this._runningHere()
    );
  }

  /** Whether a job started here still runs (its end is to be announced). */
  private _runningHere(): boolean {
    for (const id of this._startedHere) {
      const job = this._jobs.get(id);
      if (job && !isFinished(job)) {
        return true;
      }
    }
    return false;
  }

  private async _fetch(state: IPoll.State<void, unknown, 'standby'>) {
    const everything = this._active || this._everythingNext;
    this._everythingNext = false;
    const slow =
      everything &&
      (state.phase === 'started' ||
        state.phase === 'refreshed' ||
        this._images.data === null ||
        this._imagesStale ||
        this._ticks % SLOW_EVERY === 0);
    if (everything) {
      this._ticks++;
    }
    if (slow) {
      this._imagesStale = false;
    }
    const wantKernels = everything || this._kernelWatchers > 0;
    const wantJobs = everything || this._runningHere();
    // Running jobs known before asking: the server forgot those it omits.
    const running = wantJobs
      ? [...this._jobs.values()].filter(job => !isFinished(job))
      : [];

    const api = this.api;
    const skip = Promise.resolve(null);
    const [status, kernels, gpus, jobs, images, volumes] =
      await Promise.allSettled([
        everything ? api.getStatus() : skip,
        wantKernels ? api.getKernels() : skip,
        everything ? api.getGpus() : skip,
        wantJobs ? api.getJobs() : skip,
        slow ? api.getImages() : skip,
        slow ? api.getVolumes() : skip
      ]);
    if (this._isDisposed) {
      return;
    }
    if (everything) {
      this._status = settle(status, this._status);
      this._gpus = settle(gpus, this._gpus);
    }
    if (wantKernels) {
      this._kernels = settle(kernels, this._kernels);
    }
    if (slow) {
      this._images = settle(images, this._images);
      this._volumes = settle(volumes, this._volumes);
    }
    if (jobs.status === 'fulfilled' && jobs.value) {
      const listed = new Set(jobs.value.map(job => job.id));
      jobs.value.forEach(job => this._updateJob(job));
      running
        .filter(job => !listed.has(job.id))
        .forEach(job =>
          this._updateJob({
            ...job,
            state: 'error',
            error: this._trans.__(
              'The server no longer knows this job (was it restarted?).'
            )
          })
        );
    }
    this._lastUpdate = new Date();
    this._changed.emit();

    // Rejecting makes the poll back off while the server or the engine fails.
    if (!everything) {
      for (const result of [kernels, jobs]) {
        if (result.status === 'rejected') {
          throw result.reason;
        }
      }
      return;
    }
    if (status.status === 'rejected') {
      throw status.reason;
    }
    if (status.value && !status.value.engine.reachable) {
      throw new Error(
        status.value.engine.reason || 'Docker engine not reachable'
      );
    }
  }

  /** Record a fresh copy of a job; announce the end of one watched running. */
  private _updateJob(job: IJob): void {
    const previous = this._jobs.get(job.id);
    this._jobs.set(job.id, job);
    if (!isFinished(job)) {
      this._watched.add(job.id);
    } else if (
      this._watched.has(job.id) &&
      (previous === undefined || !isFinished(previous)) &&
      !this._announced.has(job.id)
    ) {
      this._announced.add(job.id);
      this._imagesStale = true;
      this._jobFinished.emit({
        job,
        startedHere: this._startedHere.has(job.id)
      });
      void this._poll.refresh();
    }
  }

  private _trans: TranslationBundle;
  private _active = false;
  private _isDisposed = false;
  private _poll: Poll<void, unknown, 'standby'>;
  private _ticks = 0;
  private _everythingNext = false;
  private _kernelWatchers = 0;
  private _imagesStale = false;
  private _lastUpdate: Date | null = null;
  private _status: IResource<IStatus> = empty();
  private _images: IResource<IImage[]> = empty();
  private _kernels: IResource<IContainerKernel[]> = empty();
  private _gpus: IResource<IGpus> = empty();
  private _volumes: IResource<IVolumes> = empty();
  private _jobs = new Map<string, IJob>();
  private _watched = new Set<string>();
  private _startedHere = new Set<string>();
  private _dismissed = new Set<string>();
  private _announced = new Set<string>();
  private _busy = new Set<string>();
  private _changed = new Signal<this, void>(this);
  private _jobFinished = new Signal<this, { job: IJob; startedHere: boolean }>(
    this
  );
}

/** Fold a settled request into a resource, keeping the last good data. */
function settle<T>(
  result: PromiseSettledResult<T | null>,
  previous: IResource<T>
): IResource<T> {
  if (result.status === 'fulfilled') {
    return { data: result.value, error: null };
  }
  const httpStatus = errorStatus(result.reason);
  return {
    // 503: the engine is down, so the old rows are gone too; other errors
    // may be transient: keep the last good rows (shown as stale).
    data: httpStatus === 503 ? null : previous.data,
    error: errorMessage(result.reason),
    httpStatus
  };
}

export namespace MLContainerModel {
  export interface IOptions {
    /** The server connection settings (the app's service manager's). */
    serverSettings: ServerConnection.ISettings;
    /** Poll interval in ms (default 2000; see the `interval` property). */
    interval?: number;
    /** For the few messages the model writes itself. */
    trans?: TranslationBundle;
  }
}
