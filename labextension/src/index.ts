import {
  ILabShell,
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, Notification } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStatusBar } from '@jupyterlab/statusbar';
import {
  ITranslator,
  nullTranslator,
  TranslationBundle
} from '@jupyterlab/translation';

import { createActions } from './actions';
import { addCommands } from './commands';
import { MLContainerModel } from './model';
import { MLContainerPanel, PANEL_ID } from './panel';
import { setupRestore } from './restore';
import {
  DEFAULT_SETTINGS,
  IMLContainerSettings,
  readSettings
} from './settings';
import { ContainerKernelStatus } from './statusbar';
import { CommandIDs, IJob } from './tokens';

/**
 * The plugin id (its settings schema is schema/plugin.json).
 */
const PLUGIN_ID = 'jupyter-mlcontainer:plugin';

/**
 * The "ML Containers" sidebar panel, its commands and the status-bar item.
 */
const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description:
    'Run Jupyter kernels inside CUDA/PyTorch Docker images: workspace mounted, shared model cache, GPUs passed through.',
  autoStart: true,
  optional: [
    ILabShell,
    ILayoutRestorer,
    ICommandPalette,
    IStatusBar,
    ISettingRegistry,
    ITranslator,
    INotebookTracker
  ],
  activate: (
    app: JupyterFrontEnd,
    labShell: ILabShell | null,
    restorer: ILayoutRestorer | null,
    palette: ICommandPalette | null,
    statusBar: IStatusBar | null,
    settingRegistry: ISettingRegistry | null,
    translator: ITranslator | null,
    tracker: INotebookTracker | null
  ): void => {
    const trans = (translator ?? nullTranslator).load('jupyter_mlcontainer');
    // Read by the actions when they run; updated when the settings change.
    const settings: IMLContainerSettings = { ...DEFAULT_SETTINGS };
    const model = new MLContainerModel({
      serverSettings: app.serviceManager.serverSettings,
      interval: settings.pollInterval * 1000,
      trans
    });
    if (settingRegistry) {
      settingRegistry
        .load(PLUGIN_ID)
        .then(loaded => {
          const apply = () => {
            Object.assign(settings, readSettings(loaded));
            model.interval = settings.pollInterval * 1000;
          };
          apply();
          loaded.changed.connect(apply);
        })
        .catch(reason =>
          console.warn('jupyter-mlcontainer: could not load settings', reason)
        );
    }

    const actions = createActions({ app, model, trans, settings, tracker });
    addCommands({ app, model, actions, trans, labShell, palette });

    const panel = new MLContainerPanel({
      model,
      commands: app.commands,
      trans
    });
    app.shell.add(panel, 'left', { rank: 600, type: 'ML Containers' });
    restorer?.add(panel, PANEL_ID);

    // Tell when a pull or build started from this tab ends, even with the
    // panel closed (the model keeps polling while one runs).
    model.jobFinished.connect((_, { job, startedHere }) => {
      if (startedHere) {
        notifyJobEnd(job, trans);
      }
    });

    // Offer to restore the kernel of notebooks frozen elsewhere.
    if (tracker) {
      setupRestore(app, tracker, model, trans);
    }

    if (statusBar) {
      const item = new ContainerKernelStatus({
        shell: app.shell,
        model,
        trans,
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

/** A notification for the end of a pull or a build. */
function notifyJobEnd(job: IJob, trans: TranslationBundle): void {
  const pull = job.kind === 'pull';
  if (job.state === 'done') {
    Notification.success(
      pull
        ? trans.__('Pull of %1 finished.', job.target)
        : trans.__('Build of %1 finished.', job.target),
      { autoClose: 5000 }
    );
  } else if (job.state === 'error') {
    const error = job.error ?? trans.__('unknown error');
    Notification.error(
      pull
        ? trans.__('Pull of %1 failed: %2', job.target, error)
        : trans.__('Build of %1 failed: %2', job.target, error),
      { autoClose: false }
    );
  }
}

export default plugin;
