/**
 * Typed calls to the jupyter-mlcontainer REST API, one function per route.
 */
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

export function getStatus(): Promise<IStatus> {
  return requestAPI<IStatus>('status');
}

export async function getImages(): Promise<IImage[]> {
  return (await requestAPI<{ images: IImage[] }>('images')).images.map(
    normalizeImage
  );
}

export async function pullImage(image: string): Promise<IJob> {
  return normalizeJob(
    (await requestAPI<{ job: IJob }>('images/pull', post({ image }))).job
  );
}

export async function getJobs(): Promise<IJob[]> {
  return (await requestAPI<{ jobs: IJob[] }>('jobs')).jobs.map(normalizeJob);
}

export async function getJob(id: string): Promise<IJob> {
  return normalizeJob(await requestAPI<IJob>(`jobs/${encodeURIComponent(id)}`));
}

export async function cancelJob(id: string): Promise<IJob> {
  return normalizeJob(
    await requestAPI<IJob>(`jobs/${encodeURIComponent(id)}`, {
      method: 'DELETE'
    })
  );
}

export async function addKernelspec(
  request: IKernelspecRequest
): Promise<IKernelspec> {
  return (
    await requestAPI<{ kernelspec: IKernelspec }>('kernelspecs', post(request))
  ).kernelspec;
}

export async function getKernels(): Promise<IContainerKernel[]> {
  return (await requestAPI<{ kernels: IContainerKernel[] }>('kernels')).kernels;
}

export async function stopKernel(kernelId: string): Promise<void> {
  await requestAPI<void>(`kernels/${encodeURIComponent(kernelId)}`, {
    method: 'DELETE'
  });
}

export function getGpus(): Promise<IGpus> {
  return requestAPI<IGpus>('gpus');
}

export function getVolumes(): Promise<IVolumes> {
  return requestAPI<IVolumes>('volumes');
}

/** Write a Dockerfile (and requirements) reproducing a kernel's container. */
export function freezeKernel(
  kernelId: string,
  force = false
): Promise<IFreezeResult> {
  return requestAPI<IFreezeResult>(
    `kernels/${encodeURIComponent(kernelId)}/freeze`,
    post({ force })
  );
}

export async function buildImage(request: IBuildRequest): Promise<IJob> {
  return normalizeJob(
    (
      await requestAPI<{ job: IJob }>('images/build', post({
        build_args: {},
        ...request
      }))
    ).job
  );
}

/** What restoring a frozen notebook would do (changes nothing on the server). */
export function restorePlan(path: string): Promise<IRestorePlan> {
  return requestAPI<IRestorePlan>(
    `notebooks/restore?path=${encodeURIComponent(path)}`
  );
}

/**
 * Do the restore plan the user confirmed: the server refuses (409) when the
 * notebook, its Dockerfile or the images changed since the plan was fetched.
 */
export async function restoreNotebook(
  path: string,
  fingerprint: string
): Promise<RestoreResult> {
  const answer = await requestAPI<RestoreResult>(
    'notebooks/restore',
    post({ path, fingerprint })
  );
  return 'job' in answer ? { job: normalizeJob(answer.job) } : answer;
}
