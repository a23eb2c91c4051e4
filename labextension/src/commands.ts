/**
 * The extension's commands. The panel's buttons execute them with arguments
 * (a kernel id, an image); from the command palette, without arguments, they
 * ask for what they act on. What each one does lives in actions.ts.
 */
import { ILabShell, JupyterFrontEnd } from '@jupyterlab/application';
import { ICommandPalette, InputDialog } from '@jupyterlab/apputils';
import { TranslationBundle } from '@jupyterlab/translation';
import { refreshIcon } from '@jupyterlab/ui-components';
import { ReadonlyPartialJSONObject } from '@lumino/coreutils';

import { IActions } from './actions';
import { imageName, shortId } from './format';
import { containerIcon } from './icons';
import { IResource, MLContainerModel } from './model';
import { notifyJobStarted, reportError } from './notify';
import { PANEL_ID } from './panel';
import { CommandIDs, IContainerKernel, IImage } from './tokens';

export function addCommands(options: {
  app: JupyterFrontEnd;
  model: MLContainerModel;
  actions: IActions;
  trans: TranslationBundle;
  labShell: ILabShell | null;
  palette: ICommandPalette | null;
}): void {
  const { app, model, actions, trans, labShell, palette } = options;
  const { commands } = app;

  /** A string argument, or undefined when absent or empty. */
  const arg = (args: ReadonlyPartialJSONObject, name: string) => {
    const value = args[name];
    return typeof value === 'string' && value ? value : undefined;
  };

  /** The kernel an id names, or the one the user picks among the running. */
  const kernelFor = (args: ReadonlyPartialJSONObject) =>
    resolve<IContainerKernel>({
      model,
      trans,
      id: arg(args, 'kernelId'),
      resource: () => model.kernels,
      matches: (kernel, id) => kernel.kernel_id === id,
      label: kernel =>
        trans.__(
          '%1 (%2, kernel %3)',
          kernel.notebook_path ?? trans.__('no notebook'),
          kernel.image,
          shortId(kernel.kernel_id)
        ),
      pickTitle: trans.__('Container kernel'),
      unknown: id => trans.__('No container kernel has the id %1.', id),
      none: trans.__('No container kernel is running.')
    });

  /** The image a tag or id names, or the one the user picks. */
  const imageFor = (args: ReadonlyPartialJSONObject) =>
    resolve<IImage>({
      model,
      trans,
      id: arg(args, 'image'),
      resource: () => model.images,
      matches: (image, ref) => image.id === ref || image.tags.includes(ref),
      label: image => imageName(image),
      pickTitle: trans.__('Image'),
      unknown: ref => trans.__('There is no local image %1.', ref),
      none: trans.__('There is no local Docker image.')
    });

  commands.addCommand(CommandIDs.openPanel, {
    label: trans.__('Open ML Containers Panel'),
    caption: trans.__('Docker images, container kernels, GPUs and volumes'),
    icon: args => (args['isPalette'] ? undefined : containerIcon),
    execute: () => {
      if (labShell) {
        labShell.activateById(PANEL_ID);
      } else {
        app.shell.activateById(PANEL_ID);
      }
    }
  });

  commands.addCommand(CommandIDs.refresh, {
    label: trans.__('Refresh'),
    caption: trans.__(
      'Ask the server for images, kernels, GPUs and volumes now'
    ),
    icon: args => (args['isPalette'] ? undefined : refreshIcon),
    execute: () => model.refresh()
  });

  commands.addCommand(CommandIDs.pullImage, {
    label: args =>
      arg(args, 'image')
        ? trans.__('Pull %1', arg(args, 'image'))
        : trans.__('Pull Image…'),
    caption: trans.__('Pull a Docker image from its registry'),
    execute: async args => {
      const given = arg(args, 'image');
      if (given) {
        // The caller (the panel's pull form) shows the error itself.
        return actions.pull(given);
      }
      const answer = await InputDialog.getText({
        title: trans.__('Pull an image'),
        label: trans.__('Image'),
        placeholder: trans.__('e.g. pytorch/pytorch:latest'),
        okLabel: trans.__('Pull'),
        cancelLabel: trans.__('Cancel')
      });
      const image = answer.value?.trim();
      if (!answer.button.accept || !image) {
        return;
      }
      try {
        await actions.pull(image);
      } catch (error) {
        await reportError(trans.__('Could not pull %1', image), error);
        return;
      }
      notifyJobStarted(trans.__('Pulling %1…', image), commands, trans);
    }
  });

  commands.addCommand(CommandIDs.cancelJob, {
    label: trans.__('Cancel Pull or Build'),
    execute: async args => {
      const job = model.job(arg(args, 'jobId') ?? '');
      if (job) {
        await actions.cancelJob(job);
      }
    }
  });

  commands.addCommand(CommandIDs.stopKernel, {
    label: args =>
      arg(args, 'kernelId')
        ? trans.__('Stop Kernel')
        : trans.__('Stop Container Kernel…'),
    caption: trans.__('Stop a container kernel and its container'),
    execute: async args => {
      const kernel = await kernelFor(args);
      if (kernel) {
        await actions.stopKernel(kernel);
      }
    }
  });

  commands.addCommand(CommandIDs.freezeKernel, {
    label: args =>
      arg(args, 'kernelId')
        ? trans.__('Freeze Kernel')
        : trans.__('Freeze Container Kernel…'),
    caption: trans.__(
      'Write a Dockerfile and requirements reproducing a container kernel'
    ),
    execute: async args => {
      const kernel = await kernelFor(args);
      if (kernel) {
        await actions.freeze(kernel);
      }
    }
  });

  commands.addCommand(CommandIDs.addKernel, {
    label: args =>
      arg(args, 'image')
        ? trans.__('Add %1 as a Kernel…', arg(args, 'image'))
        : trans.__('Add Kernel for Image…'),
    caption: trans.__('Create a Jupyter kernel that runs in a Docker image'),
    execute: async args => {
      const image = await imageFor(args);
      if (image) {
        await actions.addKernel(image);
      }
    }
  });

  commands.addCommand(CommandIDs.newNotebook, {
    label: args =>
      arg(args, 'image')
        ? trans.__('New Notebook in %1', arg(args, 'image'))
        : trans.__('New Notebook in Image…'),
    caption: trans.__(
      "Open a new notebook on an image's kernel (adding one if it has none)"
    ),
    execute: async args => {
      const image = await imageFor(args);
      if (image) {
        await actions.newNotebook(image, arg(args, 'kernelName'));
      }
    }
  });

  commands.addCommand(CommandIDs.copyDigest, {
    label: trans.__('Copy Image Digest'),
    execute: async args => {
      const image = await imageFor(args);
      if (image) {
        actions.copyDigest(image);
      }
    }
  });

  commands.addCommand(CommandIDs.removeImage, {
    label: args =>
      arg(args, 'image')
        ? trans.__('Remove %1…', arg(args, 'image'))
        : trans.__('Remove Image…'),
    caption: trans.__(
      'Remove an image from the Docker engine (refused while a kernel or kernelspec uses it)'
    ),
    execute: async args => {
      const image = await imageFor(args);
      if (image) {
        await actions.removeImage(image);
      }
    }
  });

  if (palette) {
    for (const command of [
      CommandIDs.openPanel,
      CommandIDs.refresh,
      CommandIDs.pullImage,
      CommandIDs.addKernel,
      CommandIDs.newNotebook,
      CommandIDs.freezeKernel,
      CommandIDs.stopKernel,
      CommandIDs.removeImage
    ]) {
      palette.addItem({ command, category: trans.__('ML Containers') });
    }
  }
}

/**
 * The item an argument names, or (without one) the one the user picks in a
 * dialog; null (after telling why) when there is none or the user cancels.
 */
async function resolve<T>(options: {
  model: MLContainerModel;
  trans: TranslationBundle;
  /** The argument (an id or a tag), undefined when the command got none. */
  id: string | undefined;
  resource: () => IResource<T[]>;
  matches: (item: T, id: string) => boolean;
  /** How the item shows in the pick list (unique per item). */
  label: (item: T) => string;
  pickTitle: string;
  unknown: (id: string) => string;
  none: string;
}): Promise<T | null> {
  const { id, trans } = options;
  const find = () =>
    id === undefined
      ? undefined
      : options.resource().data?.find(item => options.matches(item, id));
  // Not fetched yet (the panel never showed), or too new: ask the server.
  if (options.resource().data === null || (id !== undefined && !find())) {
    await options.model.refresh();
  }
  const { data, error } = options.resource();
  if (id !== undefined) {
    const found = find();
    if (!found) {
      await reportError(options.pickTitle, error ?? options.unknown(id));
    }
    return found ?? null;
  }
  const items = data ?? [];
  if (items.length === 0) {
    await reportError(options.pickTitle, error ?? options.none);
    return null;
  }
  const labels = items.map(options.label);
  const answer = await InputDialog.getItem({
    title: options.pickTitle,
    items: labels,
    okLabel: trans.__('OK'),
    cancelLabel: trans.__('Cancel')
  });
  if (!answer.button.accept || answer.value === null) {
    return null;
  }
  return items[labels.indexOf(answer.value)] ?? null;
}
