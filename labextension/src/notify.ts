/**
 * How the actions tell the user what happened outside the panel: an error
 * dialog when something failed, a notification when a pull or build started
 * (its progress shows in the panel).
 */
import { Notification, showErrorMessage } from '@jupyterlab/apputils';
import { TranslationBundle } from '@jupyterlab/translation';
import { CommandRegistry } from '@lumino/commands';

import { errorMessage } from './format';
import { CommandIDs } from './tokens';

/**
 * An error dialog: `title` says what failed, the body why (the error's
 * message, e.g. the server's; a string is shown as it is).
 */
export function reportError(title: string, error: unknown): Promise<void> {
  return showErrorMessage(title, errorMessage(error));
}

/**
 * A short-lived notification that a pull or build started, with a button to
 * open the panel, where the job's row follows its progress.
 */
export function notifyJobStarted(
  text: string,
  commands: CommandRegistry,
  trans: TranslationBundle
): void {
  Notification.info(text, {
    autoClose: 5000,
    actions: [
      {
        label: trans.__('Show progress'),
        callback: () => void commands.execute(CommandIDs.openPanel)
      }
    ]
  });
}
