/**
 * The user's settings (schema/plugin.json), read from the settings registry.
 */
import { ISettingRegistry } from '@jupyterlab/settingregistry';

export interface IMLContainerSettings {
  /** Seconds between two polls of the REST API (at least 1). */
  pollInterval: number;
  /** Whether stopping a kernel asks for confirmation first. */
  confirmStopKernel: boolean;
}

/** The schema's defaults, used until (or without) the settings registry. */
export const DEFAULT_SETTINGS: Readonly<IMLContainerSettings> = {
  pollInterval: 2,
  confirmStopKernel: true
};

/** The composite (user over default) values, checked. */
export function readSettings(
  settings: ISettingRegistry.ISettings
): IMLContainerSettings {
  const interval = settings.get('pollInterval').composite;
  const confirm = settings.get('confirmStopKernel').composite;
  return {
    pollInterval:
      typeof interval === 'number' && interval >= 1
        ? interval
        : DEFAULT_SETTINGS.pollInterval,
    confirmStopKernel:
      typeof confirm === 'boolean'
        ? confirm
        : DEFAULT_SETTINGS.confirmStopKernel
  };
}
