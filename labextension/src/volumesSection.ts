/**
 * "Volumes": the shared model-cache volume and each kernel's workspace mount.
 */
import { h, VirtualElement } from '@lumino/virtualdom';

import { formatBytes } from './format';
import { Section } from './section';
import { IVolumes } from './tokens';
import { field, kids, message } from './ui';

export class VolumesSection extends Section<IVolumes> {
  constructor(options: Omit<Section.IOptions, 'key' | 'title'>) {
    super({ ...options, key: 'volumes', title: options.trans.__('Volumes') });
  }

  protected state(): Section.IState<IVolumes> {
    const trans = this.trans;
    const { data, error, httpStatus } = this.model.volumes;
    return {
      data,
      error: error
        ? this.engineDown(httpStatus)
          ? trans.__('Volumes need the Docker engine (see above).')
          : trans.__('Could not list volumes: %1', error)
        : null,
      loading: trans.__('Loading volumes…')
    };
  }

  protected render(data: IVolumes, stale: boolean): VirtualElement[] {
    return [
      h.div(
        { className: `mlc-rows${stale ? ' mlc-stale' : ''}` },
        this._cache(data),
        ...this._workspaces(data)
      )
    ];
  }

  private _cache(data: IVolumes): VirtualElement {
    const trans = this.trans;
    const cache = data.cache;
    const kernels = this.model.kernels.data ?? [];
    const pathOf = (id: string) =>
      kernels.find(k => k.kernel_id === id)?.notebook_path ??
      trans.__('kernel %1', id.slice(0, 8));
    const exists = this.model.status.data?.cache_volume.exists;
    return h.div(
      {
        key: 'cache',
        className: 'mlc-row mlc-volume-row mlc-cache-row',
        dataset: { testid: 'mlc-cache-volume' }
      },
      h.div(
        { className: 'mlc-row-head' },
        h.span({ className: 'mlc-row-title' }, trans.__('Model cache')),
        h.code({ className: 'mlc-volume-name' }, cache.name)
      ),
      h.div(
        { className: 'mlc-row-meta' },
        field(
          trans.__('Size'),
          cache.size === null
            ? exists === false
              ? trans.__('not created yet')
              : '—'
            : formatBytes(cache.size),
          'mlc-cache-size'
        ),
        ...kids(
          cache.mountpoint &&
            field(trans.__('Host path'), h.code({}, cache.mountpoint))
        )
      ),
      h.div(
        { className: 'mlc-row-meta', dataset: { testid: 'mlc-cache-kernels' } },
        h.span({ className: 'mlc-field-label' }, trans.__('Mounted by')),
        cache.kernels.length > 0
          ? cache.kernels.map(pathOf).join(', ')
          : h.span({ className: 'mlc-muted' }, trans.__('no running kernel'))
      )
    );
  }

  private _workspaces(data: IVolumes): VirtualElement[] {
    const trans = this.trans;
    if (data.workspaces.length === 0) {
      return [
        message(
          'hint',
          'mlc-workspaces-empty',
          trans.__(
            'No workspace mounts: each running container kernel mounts its notebook directory here.'
          )
        )
      ];
    }
    const kernels = this.model.kernels.data ?? [];
    const heading = h.div(
      { className: 'mlc-subheading' },
      trans.__('Workspace mounts')
    );
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
              kernel?.notebook_path ??
                trans.__('kernel %1', ws.kernel_id.slice(0, 8))
            )
          ),
          h.div(
            { className: 'mlc-row-meta mlc-mount' },
            field(
              trans.__('Host'),
              h.code({ title: ws.source }, ws.source),
              'mlc-workspace-source'
            ),
            field(
              trans.__('Container'),
              h.code({ title: ws.target }, ws.target),
              'mlc-workspace-target'
            )
          )
        );
      })
    ];
  }
}
