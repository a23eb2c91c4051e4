/**
 * What the extension's commands do (see commands.ts, which the panel's
 * buttons and the command palette execute): REST calls through the model plus
 * the JupyterLab side (dialogs, kernelspec refresh, opening notebooks,
 * clipboard).
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import {
  Clipboard,
  Dialog,
  Notification,
  showDialog
} from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { TranslationBundle } from '@jupyterlab/translation';

import { imageName, imageRef, shortId } from './format';
import { freezeKernel } from './freeze';
import { KernelDialogBody } from './kernelDialog';
import { MLContainerModel } from './model';
import { reportError } from './notify';
import { IMLContainerSettings } from './settings';
import { IContainerKernel, IImage, IJob, IKernelspecRequest } from './tokens';

export interface IActions {
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
  /** Confirm (unless the settings say not to), then stop a container kernel. */
  stopKernel(kernel: IContainerKernel): Promise<void>;
  /** Confirm, then remove an image (the server refuses while something uses it). */
  removeImage(image: IImage): Promise<void>;
}

export function createActions(options: {
  app: JupyterFrontEnd;
  model: MLContainerModel;
  trans: TranslationBundle;
  /** Read when an action runs, so that changed settings apply at once. */
  settings: Readonly<IMLContainerSettings>;
  tracker: INotebookTracker | null;
}): IActions {
  const { app, model, trans, settings, tracker } = options;

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
        title: trans.__('Add %1 as a kernel', imageName(image)),
        body: new KernelDialogBody({
          image: imageRef(image),
          imageName: imageName(image),
          gpuCount: model.status.data?.nvml.gpu_count ?? 0,
          trans
        }),
        buttons: [
          Dialog.cancelButton({ label: trans.__('Cancel') }),
          Dialog.okButton({ label: trans.__('Add kernel') })
        ],
        focusNodeSelector: 'input'
      });
      if (!result.button.accept || !result.value) {
        return;
      }
      try {
        const spec = await create(result.value);
        Notification.success(
          trans.__('Kernel "%1" added.', spec.display_name),
          {
            autoClose: 5000,
            actions: [
              {
                label: trans.__('New notebook'),
                callback: () => void openNotebook(spec.name)
              }
            ]
          }
        );
      } catch (error) {
        await reportError(trans.__('Could not add the kernel'), error);
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
        await reportError(trans.__('Could not open a notebook'), error);
      }
    },

    copyDigest(image) {
      const digest = image.digests[0] ?? image.id;
      Clipboard.copyToSystem(digest);
      Notification.info(
        image.digests.length > 0
          ? trans.__('Copied %1', digest)
          : trans.__(
              'No registry digest (local image); copied its id %1',
              shortId(image.id)
            ),
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
        await reportError(trans.__('Could not cancel %1', job.target), error);
      }
    },

    freeze(kernel) {
      return freezeKernel({ app, model, trans, tracker }, kernel);
    },

    async stopKernel(kernel) {
      if (settings.confirmStopKernel) {
        const what =
          kernel.notebook_path ?? trans.__('kernel %1', kernel.kernel_id);
        // A cluster kernel whose job still waits in the queue: cancelling takes it out.
        const queued =
          kernel.state === 'created' && !kernel.node && !!kernel.status;
        const body = queued
          ? trans.__(
              'Cancel the job of %1 (image %2)? It leaves the queue and the kernel does not start. %3',
              what,
              kernel.image,
              kernel.status ?? ''
            )
          : trans.__(
              'Stop the kernel of %1 (container %2, image %3)? Its variables are lost; the notebook file is kept.',
              what,
              shortId(kernel.container_id),
              kernel.image
            );
        const result = await showDialog({
          title: queued
            ? trans.__('Cancel the queued kernel?')
            : trans.__('Stop container kernel?'),
          body,
          buttons: [
            Dialog.cancelButton({
              label: queued ? trans.__('Keep Waiting') : trans.__('Cancel')
            }),
            Dialog.warnButton({
              label: queued ? trans.__('Cancel Job') : trans.__('Stop')
            })
          ]
        });
        if (!result.button.accept) {
          return;
        }
      }
      try {
        await model.stopKernel(kernel.kernel_id);
      } catch (error) {
        await reportError(trans.__('Could not stop the kernel'), error);
      }
    },

    async removeImage(image) {
      const ref = imageRef(image);
      const result = await showDialog({
        title: trans.__('Remove image?'),
        body: trans.__(
          'Remove %1 (%2) from the Docker engine? Pull or build it again to use it.',
          ref,
          shortId(image.id)
        ),
        buttons: [
          Dialog.cancelButton({ label: trans.__('Cancel') }),
          Dialog.warnButton({ label: trans.__('Remove') })
        ]
      });
      if (!result.button.accept) {
        return;
      }
      try {
        await model.removeImage(ref);
      } catch (error) {
        await reportError(trans.__('Could not remove %1', ref), error);
      }
    }
  };
}
