/**
 * Following one pull/build job with its own fast poll until it ends.
 *
 * Several clients (browser tabs, users of the same server) may follow the same
 * job: following is read-only (`GET jobs/<id>`), so they never interfere.
 */
import { IDisposable } from '@lumino/disposable';
import { Poll } from '@lumino/polling';

import { getJob } from './api';
import { errorStatus } from './format';
import { IJob } from './tokens';

/** Whether a job can still change. */
export function isFinished(job: IJob): boolean {
  return job.state !== 'running';
}

export class JobFollower implements IDisposable {
  constructor(options: JobFollower.IOptions) {
    this.id = options.id;
    this._onUpdate = options.onUpdate;
    this._onDone = options.onDone;
    this._poll = new Poll<void, unknown, 'standby'>({
      name: `jupyter-mlcontainer:job-${options.id}`,
      factory: () => this._fetch(),
      frequency: {
        interval: options.interval ?? 1000,
        backoff: true,
        max: 10 * 1000
      },
      standby: options.standby ?? 'when-hidden'
    });
  }

  /** The job followed. */
  readonly id: string;

  get isDisposed(): boolean {
    return this._poll.isDisposed;
  }

  dispose(): void {
    if (this._poll.isDisposed) {
      return;
    }
    this._poll.dispose();
    this._onDone?.();
  }

  private async _fetch(): Promise<void> {
    let job: IJob;
    try {
      job = await getJob(this.id);
    } catch (error) {
      if (errorStatus(error) === 404) {
        // The server forgot the job (restarted?): nothing more to follow.
        this.dispose();
        return;
      }
      throw error; // let the poll back off
    }
    this._onUpdate(job);
    if (isFinished(job)) {
      this.dispose();
    }
  }

  private _poll: Poll<void, unknown, 'standby'>;
  private _onUpdate: (job: IJob) => void;
  private _onDone?: () => void;
}

export namespace JobFollower {
  export interface IOptions {
    /** The job to follow. */
    id: string;
    /** Called with every fresh copy of the job. */
    onUpdate: (job: IJob) => void;
    /** Called once when following stops (job ended, forgotten or disposed). */
    onDone?: () => void;
    /** When the follower may stand by (see Poll.standby); default when-hidden. */
    standby?: Poll.Standby | (() => boolean | Poll.Standby);
    /** Poll interval in ms (default 1000). */
    interval?: number;
  }
}
