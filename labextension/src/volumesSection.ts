/**
 * "Volumes": the shared model-cache volume and each kernel's workspace mount.
 */
import { h, VirtualElement } from '@lumino/virtualdom';

import { formatBytes } from './format';
import { Section } from './section';
import { IVolumes } from './tokens';
import { field, kids, message } from './ui';

export class VolumesSection extends Section {
  constructor(options: Omit<Section.IOptions, 'key' | 'title'>) {
    super({ ...options, key: 'volumes', title: 'Volumes' });
  }

  protected render(): VirtualElement[] {
    const { data, error, httpStatus } = this.model.volumes;
    const out: VirtualElement[] = [];
    if (error) {
      out.push(
        httpStatus === 503 || this.model.engineReachable === false
          ? message(
              'error',
              'mlc-volumes-error',
              'Volumes need the Docker engine (see above).'
            )
          : message(
              'error',
              'mlc-volumes-error',
              `Could not list volumes: ${error}`
            )
      );
    }
    if (data === null) {
      if (!error) {
        out.push(message('info', 'mlc-volumes-loading', 'Loading volumes…'));
      }
      return out;
    }
    out.push(
      h.div(
        { className: `mlc-rows${error ? ' mlc-stale' : ''}` },
        this._cache(data),
        ...this._workspaces(data)
      )
    );
    return out;
  }

  private _cache(data: IVolumes): VirtualElement {
    const cache = data.cache;
    const kernels = this.model.kernels.data ?? [];
    const pathOf = (id: string) =>
      kernels.find(k => k.kernel_id === id)?.notebook_path ??
      `kernel ${id.slice(0, 8)}`;
    const exists = this.model.status.data?.cache_volume.exists;
    return h.div(
      {
        key: 'cache',
        className: 'mlc-row mlc-volume-row mlc-cache-row',
        dataset: { testid: 'mlc-cache-volume' }
      },
      h.div(
        { className: 'mlc-row-head' },
        h.span({ className: 'mlc-row-title' }, 'Model cache'),
        h.code({ className: 'mlc-volume-name' }, cache.name)
      ),
      h.div(
        { className: 'mlc-row-meta' },
        field(
          'Size',
          cache.size === null
            ? exists === false
              ? 'not created yet'
              : '—'
            : formatBytes(cache.size),
          'mlc-cache-size'
        ),
        ...kids(
          cache.mountpoint && field('Host path', h.code({}, cache.mountpoint))
        )
      ),
      h.div(
        { className: 'mlc-row-meta', dataset: { testid: 'mlc-cache-kernels' } },
        h.span({ className: 'mlc-field-label' }, 'Mounted by'),
        cache.kernels.length > 0
          ? cache.kernels.map(pathOf).join(', ')
          : h.span({ className: 'mlc-muted' }, 'no running kernel')
      )
    );
  }

  private _workspaces(data: IVolumes): VirtualElement[] {
    if (data.workspaces.length === 0) {
      return [
        message(
          'hint',
          'mlc-workspaces-empty',
          'No workspace mounts: each running container kernel mounts its notebook directory here.'
        )
      ];
    }
    const kernels = this.model.kernels.data ?? [];
    const heading = h.div({ className: 'mlc-subheading' }, 'Workspace mounts');
    return [
      heading,
      ...data.workspaces.map(ws => {
        const kernel = kernels.find(k => k.kernel_id === ws.kernel_id);
        return h.div(
          {
            key: `ws-${ws.kernel_id}-${ws.target}`,
            className: 'mlc-row mlc-volume-row mlc-workspace-row',
            dataset: { testid: 'mlc-workspace-row', 'kernel-id': ws.kernel_id }
          },
          h.div(
            { className: 'mlc-row-head' },
            h.span(
              { className: 'mlc-row-title' },
              kernel?.notebook_path ?? `kernel ${ws.kernel_id.slice(0, 8)}`
            )
          ),
          h.div(
            { className: 'mlc-row-meta mlc-mount' },
            field(
              'Host',
              h.code({ title: ws.source }, ws.source),
              'mlc-workspace-source'
            ),
            field(
              'Container',
              h.code({ title: ws.target }, ws.target),
              'mlc-workspace-target'
            )
          )
        );
      })
    ];
  }
}
