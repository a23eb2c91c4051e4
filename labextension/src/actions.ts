/**
 * What the panel's buttons do: REST calls through the model plus the
 * JupyterLab side (dialogs, kernelspec refresh, opening notebooks, clipboard).
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import {
  Clipboard,
  Dialog,
  Notification,
  showDialog,
  showErrorMessage
} from '@jupyterlab/apputils';

import { errorMessage, imageName, imageRef, shortId } from './format';
import { freezeKernel } from './freeze';
import { KernelDialogBody } from './kernelDialog';
import { MLContainerModel } from './model';
import { IContainerKernel, IImage, IJob, IKernelspecRequest } from './tokens';

export interface IPanelActions {
  /** Ask for options, create a kernelspec for the image, refresh the specs. */
  addKernel(image: IImage): Promise<void>;
  /** Open a new notebook on the image's kernelspec (creating one if none). */
  newNotebook(image: IImage, kernelName?: string): Promise<void>;
  /** Copy the image's repo digest (or its id when it has none). */
  copyDigest(image: IImage): void;
  /** Start pulling an image; throws with the server's message. */
  pull(name: string): Promise<void>;
  cancelJob(job: IJob): Promise<void>;
  /** Write a Dockerfile for a kernel, show it, offer to build the image. */
  freeze(kernel: IContainerKernel): Promise<void>;
  /** Confirm, then stop a container kernel. */
  stopKernel(kernel: IContainerKernel): Promise<void>;
  /** Open a notebook (or any file) by path. */
  openPath(path: string): void;
}

export function createActions(
  app: JupyterFrontEnd,
  model: MLContainerModel
): IPanelActions {
  const refreshSpecs = async (): Promise<void> => {
    try {
      await app.serviceManager.kernelspecs.refreshSpecs();
    } catch (error) {
      console.warn('jupyter-mlcontainer: could not refresh kernelspecs', error);
    }
  };

  const openNotebook = async (kernelName: string): Promise<void> => {
    await app.commands.execute('notebook:create-new', { kernelName });
  };

  const create = async (request: IKernelspecRequest) => {
    const spec = await model.addKernelspec(request);
    await refreshSpecs();
    return spec;
  };

  return {
    async addKernel(image) {
      const result = await showDialog({
        title: `Add ${imageName(image)} as a kernel`,
        body: new KernelDialogBody({
          image: imageRef(image),
          imageName: imageName(image),
          gpuCount: model.status.data?.nvml.gpu_count ?? 0
        }),
        buttons: [
          Dialog.cancelButton(),
          Dialog.okButton({ label: 'Add kernel' })
        ],
        focusNodeSelector: 'input'
      });
      if (!result.button.accept || !result.value) {
        return;
      }
      try {
        const spec = await create(result.value);
        Notification.success(`Kernel "${spec.display_name}" added.`, {
          autoClose: 5000,
          actions: [
            {
              label: 'New notebook',
              callback: () => void openNotebook(spec.name)
            }
          ]
        });
      } catch (error) {
        await showErrorMessage('Could not add the kernel', errorMessage(error));
      }
    },

    async newNotebook(image, kernelName) {
      try {
        let name = kernelName ?? image.kernelspecs[0];
        if (!name) {
          name = (await create({ image: imageRef(image) })).name;
        }
        await openNotebook(name);
      } catch (error) {
        await showErrorMessage(
          'Could not open a notebook',
          errorMessage(error)
        );
      }
    },

    copyDigest(image) {
      const digest = image.digests[0] ?? image.id;
      Clipboard.copyToSystem(digest);
      Notification.info(
        image.digests.length > 0
          ? `Copied ${digest}`
          : `No registry digest (local image); copied its id ${shortId(image.id)}`,
        { autoClose: 3000 }
      );
    },

    async pull(name) {
      await model.pull(name);
    },

    async cancelJob(job) {
      try {
        await model.cancel(job.id);
      } catch (error) {
        await showErrorMessage(
          `Could not cancel ${job.target}`,
          errorMessage(error)
        );
      }
    },

    freeze(kernel) {
      return freezeKernel(app, model, kernel);
    },

    async stopKernel(kernel) {
      const what = kernel.notebook_path ?? `kernel ${kernel.kernel_id}`;
      const result = await showDialog({
        title: 'Stop container kernel?',
        body:
          `Stop the kernel of ${what} (container ${shortId(kernel.container_id)}, ` +
          `image ${kernel.image})? Its variables are lost; the notebook file is kept.`,
        buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Stop' })]
      });
      if (!result.button.accept) {
        return;
      }
      try {
        await model.stopKernel(kernel.kernel_id);
      } catch (error) {
        await showErrorMessage(
          'Could not stop the kernel',
          errorMessage(error)
        );
      }
    },

    openPath(path) {
      void app.commands.execute('docmanager:open', { path });
    }
  };
}
