import { URLExt } from '@jupyterlab/coreutils';

import { ServerConnection } from '@jupyterlab/services';

/**
 * Call the jupyter-mlcontainer REST API.
 *
 * @param settings The server connection settings (the app's service manager's)
 * @param endPoint API REST end point, relative to `{baseUrl}mlcontainer/api`
 * @param init Initial values for the request
 * @returns The response body interpreted as JSON (or text when not JSON)
 */
export async function requestAPI<T>(
  settings: ServerConnection.ISettings,
  endPoint = '',
  init: RequestInit = {}
): Promise<T> {
  const requestUrl = URLExt.join(
    settings.baseUrl,
    'mlcontainer/api',
    endPoint
  );

  let response: Response;
  try {
    response = await ServerConnection.makeRequest(requestUrl, init, settings);
  } catch (error) {
    throw new ServerConnection.NetworkError(error as TypeError);
  }

  let data: any = await response.text();

  if (data.length > 0) {
    try {
      data = JSON.parse(data);
    } catch (error) {
      console.warn('Not a JSON response body.', response);
    }
  }

  if (!response.ok) {
    const message =
      data && typeof data === 'object' && typeof data.message === 'string'
        ? data.message
        : undefined;
    throw new ServerConnection.ResponseError(response, message);
  }

  return data as T;
}
