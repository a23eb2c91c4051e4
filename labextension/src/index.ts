import {
  ILabShell,
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, Notification } from '@jupyterlab/apputils';
import { IStatusBar } from '@jupyterlab/statusbar';

import { createActions } from './actions';
import { containerIcon } from './icons';
import { MLContainerModel } from './model';
import { MLContainerPanel, PANEL_ID } from './panel';
import { setupRestore } from './restore';
import { ContainerKernelStatus } from './statusbar';

/**
 * The plugin id.
 */
const PLUGIN_ID = 'jupyter-mlcontainer:plugin';

namespace CommandIDs {
  export const openPanel = 'mlcontainer:open-panel';
}

/**
 * The "ML Containers" sidebar panel, its command and the status-bar item.
 */
const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description:
    'Run Jupyter kernels inside CUDA/PyTorch Docker images: workspace mounted, shared model cache, GPUs passed through.',
  autoStart: true,
  optional: [ILabShell, ILayoutRestorer, ICommandPalette, IStatusBar],
  activate: (
    app: JupyterFrontEnd,
    labShell: ILabShell | null,
    restorer: ILayoutRestorer | null,
    palette: ICommandPalette | null,
    statusBar: IStatusBar | null
  ): void => {
    const model = new MLContainerModel();
    const panel = new MLContainerPanel({
      model,
      actions: createActions(app, model)
    });
    app.shell.add(panel, 'left', { rank: 600, type: 'ML Containers' });
    restorer?.add(panel, PANEL_ID);

    // Tell when a pull started from this tab ends, even with the panel closed.
    model.jobFinished.connect((_, { job, startedHere }) => {
      if (!startedHere) {
        return;
      }
      const verb = job.kind === 'pull' ? 'Pull' : 'Build';
      if (job.state === 'done') {
        Notification.success(`${verb} of ${job.target} finished.`, {
          autoClose: 5000
        });
      } else if (job.state === 'error') {
        Notification.error(
          `${verb} of ${job.target} failed: ${job.error ?? 'unknown error'}`,
          { autoClose: false }
        );
      }
    });

    // Offer to restore the kernel of notebooks frozen elsewhere.
    setupRestore(app, labShell, model);

    app.commands.addCommand(CommandIDs.openPanel, {
      label: 'Open ML Containers Panel',
      caption: 'Docker images, container kernels, GPUs and volumes',
      icon: args => (args['isPalette'] ? undefined : containerIcon),
      execute: () => {
        if (labShell) {
          labShell.activateById(PANEL_ID);
        } else {
          app.shell.activateById(PANEL_ID);
        }
      }
    });
    palette?.addItem({
      command: CommandIDs.openPanel,
      category: 'ML Containers'
    });

    if (statusBar) {
      const item = new ContainerKernelStatus({
        shell: app.shell,
        model,
        kernelspecs: app.serviceManager.kernelspecs,
        onClick: () => void app.commands.execute(CommandIDs.openPanel)
      });
      statusBar.registerStatusItem(`${PLUGIN_ID}:status`, {
        item,
        align: 'left',
        rank: 4,
        isActive: () => item.isActive,
        activeStateChanged: item.activeStateChanged
      });
    }
  }
};

export default plugin;
