/**
 * Types of the jupyter-mlcontainer REST API (`{baseUrl}mlcontainer/api/`).
 *
 * They mirror the server's JSON exactly; optional fields are the ones the
 * server may leave out.
 */

/** `GET status` */
/** An idle spare of the warm pool (started ahead of its kernel). */
export interface ISpare {
  container_id: string;
  kernelspec: string | null;
  image: string | null;
  age_s: number;
  memory_usage: number | null;
}

export interface IStatus {
  engine: {
    reachable: boolean;
    reason?: string;
    version?: string;
    kind?: string;
    nvidia_runtime?: boolean;
    storage_driver?: string | null;
    /** Why every cold start copies the whole image (vfs storage); null when it does not. */
    storage_warning?: string | null;
    /** What to do about storage_warning. */
    storage_fix?: string | null;
  };
  nvml: {
    available: boolean;
    reason: string;
    driver_version: string | null;
    cuda_driver_version: string | null;
    gpu_count: number;
  };
  cache_volume: { name: string; exists?: boolean };
  warm_pool?: { spares: ISpare[] };
  /** The Swarms that container kernelspecs name (placement 'swarm'). */
  clusters?: ICluster[];
}

/** A Swarm as the status shows it. */
export interface ICluster {
  manager: string;
  reachable?: boolean;
  reason?: string;
  nodes?: {
    hostname: string;
    role: string;
    state: string;
    address: string;
    gpus: { id: string; kernel_id: string | null }[];
  }[];
}

/** What the server learnt by probing an image. */
export interface IImageFacts {
  probe: 'done' | 'pending' | 'error';
  python_version: string | null;
  torch: string | null;
  cuda: string | null;
  ipykernel: string | null;
}

/** One entry of `GET images`. */
export interface IImage {
  id: string;
  tags: string[];
  digests: string[];
  size: number;
  /** ISO date; the server may also send Unix seconds. */
  created: string | number;
  labels: { [key: string]: string };
  facts: IImageFacts;
  /** Names of the kernelspecs that run this image. */
  kernelspecs: string[];
  /**
   * For an image that Swarm kernelspecs name: per Swarm, which of its nodes
   * hold this very image (asked in the background; `checking` until then).
   */
  swarm: ISwarmImage[];
  /**
   * Set when the image is not on this server's engine but on a Swarm manager's
   * (its address): an image only the cluster holds.
   */
  engine?: string;
}

/** Which nodes of one Swarm hold an image (`GET images`, `swarm`). */
export interface ISwarmImage {
  /** The manager's engine address. */
  manager: string;
  /** The image reference the kernelspecs name. */
  image: string;
  state: 'checking' | 'done' | 'error';
  /** hostname -> present | missing | down | "unknown: why". */
  nodes?: { [hostname: string]: string };
  error?: string;
  /** Seconds since the nodes were asked. */
  age?: number;
}

export type JobState = 'running' | 'done' | 'error' | 'cancelled';

/** A pull or build job (`GET jobs`, `GET jobs/<id>`). */
export interface IJob {
  id: string;
  kind: 'pull' | 'build';
  target: string;
  state: JobState;
  /** 0..1, or null while the size is unknown. */
  progress: number | null;
  /**
   * Pulls: one entry per layer. Builds: `steps` = {current, total} (no status).
   */
  layers: {
    [layerId: string]: { status?: string; current: number; total: number };
  };
  log: string[];
  error: string | null;
  /** What a finished job produced (e.g. a restore build's `kernelspec`). */
  result?: { kernelspec?: string; [key: string]: unknown } | null;
}

/** The `mlcontainer` notebook metadata a freeze records. */
export interface IFreezeRecord {
  image: string;
  base_image?: string;
  base_digest?: string | null;
  /** Relative to the notebook's folder. */
  dockerfile: string;
  requirements?: string;
  kernelspec: string;
  frozen_at?: string;
}

/** `POST kernels/<id>/freeze` answer. */
export interface IFreezeResult {
  dockerfile_path: string;
  requirements_path: string;
  base_image: string;
  base_digest: string | null;
  packages: { [name: string]: string };
  apt_packages: { [name: string]: string };
  /** name -> "version=build", for images that use conda */
  conda_packages?: { [name: string]: string };
  env: { [name: string]: string };
  /** What the image's GPU code was built for and what the kernel ran on, in one line. */
  machine_summary?: string;
  warnings: string[];
  seconds: number;
  notebook_path: string | null;
  notebook_metadata?: { mlcontainer: IFreezeRecord };
}

/** `POST images/build` body. */
export interface IBuildRequest {
  /** Path relative to the server root. */
  dockerfile: string;
  tag: string;
  build_args?: { [name: string]: string };
}

/** `GET notebooks/restore?path=` answer: what a restore would do. */
export interface IRestorePlan {
  notebook: string;
  recorded_image: string;
  /** "present": only a kernelspec is written; "pull"; "build". */
  source: 'present' | 'pull' | 'build';
  /** The image the kernel will run. */
  image: string;
  build_tag: string | null;
  build_if_pull_fails: boolean;
  /** Relative to the notebook's folder. */
  dockerfile: string | null;
  dockerfile_text: string | null;
  /** What the build sends besides the Dockerfile (relative to its folder). */
  context_files: string[];
  context_bytes: number;
  kernelspec: string;
  kernelspec_note: string;
  /** The restored kernelspec's options: how the notebook's kernel ran, fitted to this host. */
  kernel_options: { [key: string]: string | string[] };
  /** Each check of this host against what the notebook's GPU code needs. */
  checks: IHostCheck[];
  /** False: nothing about this host could be checked (an older record). */
  checked: boolean;
  /** A check blocks: restoring needs `ignore_checks`. */
  blocked: boolean;
  notes: string[];
  /** Sent back with POST: proves which plan was confirmed. */
  fingerprint: string;
}

/** One check of a frozen notebook's machine facts against this host. */
export interface IHostCheck {
  name: string;
  verdict: 'holds' | 'warning' | 'blocks';
  reason: string;
  /** What to do when it does not hold. */
  fix: string;
}

/** `POST notebooks/restore` answer: a kernelspec now, or a pull/build job. */
export type RestoreResult =
  | { kernelspec: string; image: string; notes?: string[] }
  | { job: IJob };

/** `POST kernelspecs` body. */
export interface IKernelspecRequest {
  image: string;
  name?: string;
  display_name?: string;
  gpus?: string;
}

/** `POST kernelspecs` answer's `kernelspec`. */
export interface IKernelspec {
  name: string;
  display_name: string;
  image: string;
}

/** Why a container kernel died. */
export interface IKernelDeath {
  message: string;
  exit_code: number;
  oom_killed: boolean;
}

/** One entry of `GET kernels`. */
export interface IContainerKernel {
  kernel_id: string;
  kernelspec: string;
  notebook_path: string | null;
  image: string;
  container_id: string;
  state: string;
  gpus: string;
  cpu_percent: number | null;
  memory_usage: number | null;
  memory_limit: number | null;
  death: IKernelDeath | null;
  /** Limits the kernelspec asks for that this engine cannot enforce, and why. */
  limits_ignored?: string | null;
  /** The Swarm or Slurm node a cluster kernel runs on (null for a local container). */
  node?: string | null;
  /**
   * What the engine says of the kernel's container; for a Slurm kernel its job: why it waits
   * and its estimated start (state "created"), its node and time left while it runs.
   */
  status?: string | null;
}

/** A process using a GPU. */
export interface IGpuProcess {
  pid: number;
  used_memory: number | null;
  kernel_id: string | null;
  notebook_path: string | null;
}

/** One GPU of `GET gpus`. */
export interface IGpu {
  index: number;
  name: string;
  uuid: string;
  utilization_gpu: number | null;
  memory_used: number | null;
  memory_total: number | null;
  temperature: number | null;
  power_usage: number | null;
  power_limit: number | null;
  mig_mode: boolean | null;
  processes: IGpuProcess[];
}

/** A GPU of a Swarm node (generic resource), and the kernel holding it. */
export interface IClusterGpu {
  manager: string;
  node: string;
  node_state: string;
  id: string;
  kernel_id: string | null;
  notebook_path: string | null;
}

/** `GET gpus` */
export interface IGpus {
  available: boolean;
  reason: string;
  driver_version: string | null;
  cuda_driver_version: string | null;
  gpus: IGpu[];
  /** The GPUs of the Swarms that container kernelspecs name. */
  clusters?: IClusterGpu[];
}

/** `GET volumes` */
export interface IVolumes {
  cache: {
    name: string;
    mountpoint: string | null;
    size: number | null;
    kernels: string[];
  };
  workspaces: { kernel_id: string; source: string; target: string }[];
}

/** The extension's commands (see commands.ts). */
export namespace CommandIDs {
  export const openPanel = 'mlcontainer:open-panel';
  export const refresh = 'mlcontainer:refresh';
  /** args: `image` (else a dialog asks for it, and shows errors itself). */
  export const pullImage = 'mlcontainer:pull-image';
  /** args: `jobId`. */
  export const cancelJob = 'mlcontainer:cancel-job';
  /** args: `kernelId` (else a dialog lists the container kernels). */
  export const stopKernel = 'mlcontainer:stop-kernel';
  /** args: `kernelId` (else a dialog lists the container kernels). */
  export const freezeKernel = 'mlcontainer:freeze-kernel';
  /** args: `image`, a tag or an id (else a dialog lists the images). */
  export const addKernel = 'mlcontainer:add-kernel';
  /** args: `image` (else a dialog lists the images), optional `kernelName`. */
  export const newNotebook = 'mlcontainer:new-notebook';
  /** args: `image`, a tag or an id. */
  export const copyDigest = 'mlcontainer:copy-digest';
  /** args: `image`, a tag or an id (else a dialog lists the images). */
  export const removeImage = 'mlcontainer:remove-image';
}
