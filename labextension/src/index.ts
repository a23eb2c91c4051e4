import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';

import { requestAPI } from './request';

/**
 * The plugin id.
 */
const PLUGIN_ID = 'jupyter-mlcontainer:plugin';

/**
 * Initialization data for the jupyter-mlcontainer extension.
 */
const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description:
    'Run Jupyter kernels inside CUDA/PyTorch Docker images: workspace mounted, shared model cache, GPUs passed through.',
  autoStart: true,
  activate: (app: JupyterFrontEnd): void => {
    console.log(`JupyterLab extension ${PLUGIN_ID} is activated!`);

    // Fire and forget: the server extension may be missing or failing, and
    // that must never break JupyterLab start-up.
    void requestAPI<unknown>('status')
      .then(data => {
        console.log('jupyter-mlcontainer status:', data);
      })
      .catch(reason => {
        console.warn(
          `The jupyter-mlcontainer server extension appears to be missing or failing (GET mlcontainer/api/status).\n${reason}`
        );
      });
  }
};

export default plugin;
