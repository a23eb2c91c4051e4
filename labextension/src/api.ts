/**
 * Typed calls to the jupyter-mlcontainer REST API, one method per route.
 */
import { ServerConnection } from '@jupyterlab/services';

import { requestAPI } from './request';
import {
  IBuildRequest,
  IContainerKernel,
  IFreezeResult,
  IGpus,
  IImage,
  IImageFacts,
  IJob,
  IKernelspec,
  IKernelspecRequest,
  IRestorePlan,
  IStatus,
  IVolumes,
  RestoreResult
} from './tokens';

const FACTS_UNKNOWN: IImageFacts = {
  probe: 'pending',
  python_version: null,
  torch: null,
  cuda: null,
  ipykernel: null
};

/** Fill what an older or newer server may leave out, so views can rely on it. */
function normalizeImage(image: IImage): IImage {
  return {
    ...image,
    tags: image.tags ?? [],
    digests: image.digests ?? [],
    labels: image.labels ?? {},
    kernelspecs: image.kernelspecs ?? [],
    swarm: image.swarm ?? [],
    facts: {
      ...FACTS_UNKNOWN,
      ...(image.facts as Partial<IImageFacts> | undefined)
    }
  };
}

function normalizeJob(job: IJob): IJob {
  return {
    ...job,
    progress: typeof job.progress === 'number' ? job.progress : null,
    layers: job.layers ?? {},
    log: job.log ?? [],
    error: job.error ?? null
  };
}

function post(body: unknown): RequestInit {
  return { method: 'POST', body: JSON.stringify(body) };
}

/**
 * The REST API client. It uses the server connection settings it is given
 * (the app's service manager's), never settings of its own.
 */
export class MLContainerAPI {
  constructor(readonly serverSettings: ServerConnection.ISettings) {}

  getStatus(): Promise<IStatus> {
    return this._request<IStatus>('status');
  }

  async getImages(): Promise<IImage[]> {
    return (await this._request<{ images: IImage[] }>('images')).images.map(
      normalizeImage
    );
  }

  async pullImage(image: string): Promise<IJob> {
    return normalizeJob(
      (await this._request<{ job: IJob }>('images/pull', post({ image }))).job
    );
  }

  async getJobs(): Promise<IJob[]> {
    return (await this._request<{ jobs: IJob[] }>('jobs')).jobs.map(
      normalizeJob
    );
  }

  async cancelJob(id: string): Promise<IJob> {
    return normalizeJob(
      await this._request<IJob>(`jobs/${encodeURIComponent(id)}`, {
        method: 'DELETE'
      })
    );
  }

  async addKernelspec(request: IKernelspecRequest): Promise<IKernelspec> {
    return (
      await this._request<{ kernelspec: IKernelspec }>(
        'kernelspecs',
        post(request)
      )
    ).kernelspec;
  }

  /** Remove an image no kernelspec or kernel uses (409 names them otherwise). */
  async removeImage(image: string): Promise<void> {
    await this._request<unknown>(`images?image=${encodeURIComponent(image)}`, {
      method: 'DELETE'
    });
  }

  /** Remove a container kernelspec. */
  async removeKernelspec(name: string): Promise<void> {
    await this._request<unknown>(`kernelspecs/${encodeURIComponent(name)}`, {
      method: 'DELETE'
    });
  }

  async getKernels(): Promise<IContainerKernel[]> {
    return (await this._request<{ kernels: IContainerKernel[] }>('kernels'))
      .kernels;
  }

  async stopKernel(kernelId: string): Promise<void> {
    await this._request<void>(`kernels/${encodeURIComponent(kernelId)}`, {
      method: 'DELETE'
    });
  }

  getGpus(): Promise<IGpus> {
    return this._request<IGpus>('gpus');
  }

  getVolumes(): Promise<IVolumes> {
    return this._request<IVolumes>('volumes');
  }

  /** Write a Dockerfile (and requirements) reproducing a kernel's container. */
  freezeKernel(kernelId: string, force = false): Promise<IFreezeResult> {
    return this._request<IFreezeResult>(
      `kernels/${encodeURIComponent(kernelId)}/freeze`,
      post({ force })
    );
  }

  async buildImage(request: IBuildRequest): Promise<IJob> {
    return normalizeJob(
      (
        await this._request<{ job: IJob }>(
          'images/build',
          post({ build_args: {}, ...request })
        )
      ).job
    );
  }

  /** What restoring a frozen notebook would do (changes nothing on the server). */
  restorePlan(path: string): Promise<IRestorePlan> {
    return this._request<IRestorePlan>(
      `notebooks/restore?path=${encodeURIComponent(path)}`
    );
  }

  /**
   * Do the restore plan the user confirmed: the server refuses (409) when the
   * notebook, its Dockerfile or the images changed since the plan was fetched.
   */
  async restoreNotebook(
    path: string,
    fingerprint: string,
    ignoreChecks = false
  ): Promise<RestoreResult> {
    const answer = await this._request<RestoreResult>(
      'notebooks/restore',
      post({ path, fingerprint, ignore_checks: ignoreChecks })
    );
    return 'job' in answer ? { job: normalizeJob(answer.job) } : answer;
  }

  private _request<T>(endPoint: string, init: RequestInit = {}): Promise<T> {
    return requestAPI<T>(this.serverSettings, endPoint, init);
  }
}
