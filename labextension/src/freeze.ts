/**
 * "Freeze" a running container kernel: the server writes a Dockerfile and a
 * requirements file reproducing it; this shows what was written, records the
 * `mlcontainer` metadata in the notebook when it is open here (saved with the
 * notebook, never written to the file by us), and offers to build the image.
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { Dialog, InputDialog, showDialog } from '@jupyterlab/apputils';
import { PathExt } from '@jupyterlab/coreutils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { TranslationBundle } from '@jupyterlab/translation';
import { Widget } from '@lumino/widgets';

import { errorMessage, errorStatus } from './format';
import { MLContainerModel } from './model';
import { notifyJobStarted, reportError } from './notify';
import {
  CommandIDs,
  IContainerKernel,
  IFreezeRecord,
  IFreezeResult
} from './tokens';

/** What freezing needs from the application. */
export interface IFreezeContext {
  app: JupyterFrontEnd;
  model: MLContainerModel;
  trans: TranslationBundle;
  /** To find the frozen notebook when it is open here. */
  tracker: INotebookTracker | null;
}

/** The open notebook of a path (relative to the server root), if any. */
function findNotebook(
  tracker: INotebookTracker | null,
  path: string
): NotebookPanel | null {
  return (
    tracker?.find(
      panel => panel.context.path === path || panel.context.localPath === path
    ) ?? null
  );
}

/** Freeze a kernel: ask before overwriting, show the result, offer a build. */
export async function freezeKernel(
  context: IFreezeContext,
  kernel: IContainerKernel
): Promise<void> {
  const { model, trans, tracker } = context;
  let result: IFreezeResult;
  try {
    try {
      result = await model.freeze(kernel.kernel_id, false);
    } catch (error) {
      if (errorStatus(error) !== 409) {
        throw error;
      }
      const answer = await showDialog({
        title: trans.__('Overwrite the Dockerfile?'),
        body: errorMessage(error),
        buttons: [
          Dialog.cancelButton({ label: trans.__('Cancel') }),
          Dialog.warnButton({ label: trans.__('Overwrite') })
        ]
      });
      if (!answer.button.accept) {
        return;
      }
      result = await model.freeze(kernel.kernel_id, true);
    }
  } catch (error) {
    await reportError(trans.__('Could not freeze the kernel'), error);
    return;
  }

  const record = result.notebook_metadata?.mlcontainer;
  let recorded: 'yes' | 'not-open' | 'none' = 'none';
  if (record && result.notebook_path) {
    const notebook = findNotebook(tracker, result.notebook_path)?.model;
    if (notebook) {
      notebook.setMetadata('mlcontainer', record);
      recorded = 'yes';
    } else {
      recorded = 'not-open';
    }
  }

  const dialog = new Dialog({
    title: trans.__('Kernel frozen'),
    body: new FreezeResultBody(result, recorded, trans),
    buttons: [
      Dialog.cancelButton({ label: trans.__('Close') }),
      Dialog.okButton({ label: trans.__('Build image') })
    ],
    defaultButton: 0
  });
  dialog.node
    .querySelector('.jp-Dialog-footer .jp-mod-accept')
    ?.setAttribute('data-testid', 'mlc-build-button');
  const answer = await dialog.launch();
  if (answer.button.accept) {
    await buildFrozen(context, result, record);
  }
}

/** Start building the image of a frozen kernel; the panel shows the job. */
async function buildFrozen(
  { app, model, trans }: IFreezeContext,
  result: IFreezeResult,
  record: IFreezeRecord | undefined
): Promise<void> {
  let tag = record?.image ?? '';
  if (!tag) {
    const answer = await InputDialog.getText({
      title: trans.__('Tag of the image to build'),
      placeholder: trans.__('name:tag'),
      okLabel: trans.__('Build'),
      cancelLabel: trans.__('Cancel')
    });
    if (!answer.button.accept || !answer.value?.trim()) {
      return;
    }
    tag = answer.value.trim();
  }
  const dockerfile = result.notebook_path
    ? PathExt.join(
        PathExt.dirname(result.notebook_path),
        PathExt.basename(result.dockerfile_path)
      )
    : result.dockerfile_path;
  try {
    await model.build({ dockerfile, tag });
  } catch (error) {
    await reportError(trans.__('Could not build %1', tag), error);
    return;
  }
  notifyJobStarted(trans.__('Building %1…', tag), app.commands, trans);
  void app.commands.execute(CommandIDs.openPanel);
}

/** What a freeze wrote: Dockerfile, base, counts, warnings, metadata. */
class FreezeResultBody extends Widget {
  constructor(
    result: IFreezeResult,
    recorded: 'yes' | 'not-open' | 'none',
    trans: TranslationBundle
  ) {
    super();
    this.addClass('mlc-freeze-result');
    this.node.dataset.testid = 'mlc-freeze-result';
    const line = (label: string, value: string, testid?: string) => {
      const p = document.createElement('p');
      const strong = document.createElement('strong');
      strong.textContent = `${label}: `;
      const code = document.createElement('code');
      code.textContent = value;
      p.append(strong, code);
      if (testid) {
        p.dataset.testid = testid;
      }
      this.node.appendChild(p);
      return p;
    };
    const text = (value: string, className = '', testid?: string) => {
      const p = document.createElement('p');
      p.textContent = value;
      p.className = className;
      if (testid) {
        p.dataset.testid = testid;
      }
      this.node.appendChild(p);
      return p;
    };

    line(
      trans.__('Dockerfile'),
      result.dockerfile_path,
      'mlc-freeze-dockerfile'
    );
    line(trans.__('Requirements'), result.requirements_path);
    if (result.base_digest) {
      line(
        trans.__('Base'),
        `${result.base_image}@${result.base_digest}`,
        'mlc-freeze-base'
      );
    } else {
      line(trans.__('Base'), result.base_image, 'mlc-freeze-base');
      text(
        trans.__(
          '%1 has no registry digest: the Dockerfile is not portable until that image is pushed to a registry.',
          result.base_image
        ),
        'mlc-message mlc-message-warning',
        'mlc-freeze-not-portable'
      );
    }
    const count = (o: object | undefined) => Object.keys(o ?? {}).length;
    const counts = [
      trans._n(
        '%1 Python package',
        '%1 Python packages',
        count(result.packages)
      ),
      trans._n('%1 apt package', '%1 apt packages', count(result.apt_packages)),
      ...(count(result.conda_packages)
        ? [
            trans._n(
              '%1 conda package',
              '%1 conda packages',
              count(result.conda_packages)
            )
          ]
        : []),
      trans._n(
        '%1 environment variable',
        '%1 environment variables',
        count(result.env)
      )
    ];
    text(
      trans.__('%1 (%2 s).', counts.join(', '), result.seconds.toFixed(1)),
      '',
      'mlc-freeze-counts'
    );
    if (result.machine_summary) {
      text(
        trans.__('Machine: %1.', result.machine_summary),
        '',
        'mlc-freeze-machine'
      );
    }
    if (result.notebook_path && recorded === 'yes') {
      text(
        trans.__(
          'Recorded in the metadata of %1: save the notebook to keep it.',
          result.notebook_path
        ),
        'mlc-message mlc-message-info'
      );
    } else if (result.notebook_path && recorded === 'not-open') {
      text(
        trans.__(
          '%1 is not open here: its metadata was not updated.',
          result.notebook_path
        ),
        'mlc-message mlc-message-hint'
      );
    }
    const warnings = result.warnings ?? [];
    if (warnings.length > 0) {
      const ul = document.createElement('ul');
      ul.className = 'mlc-freeze-warnings';
      ul.dataset.testid = 'mlc-freeze-warnings';
      for (const warning of warnings) {
        const li = document.createElement('li');
        li.textContent = warning;
        ul.appendChild(li);
      }
      text(trans.__('Warnings:'), 'mlc-freeze-warnings-title');
      this.node.appendChild(ul);
    }
  }
}
