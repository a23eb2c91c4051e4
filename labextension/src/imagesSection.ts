/**
 * "Images": the pull form, pull jobs in progress, and one row per local image
 * with its facts, kernelspecs and actions.
 */
import { copyIcon } from '@jupyterlab/ui-components';
import { h, VirtualElement } from '@lumino/virtualdom';

import {
  errorMessage,
  formatBytes,
  formatDate,
  imageName,
  imageRef,
  shortId
} from './format';
import { renderJob } from './pull';
import { Section } from './section';
import { CommandIDs, IImage, ISwarmImage } from './tokens';
import { button, chip, field, iconButton, kids, message } from './ui';

export class ImagesSection extends Section<IImage[]> {
  constructor(options: Omit<Section.IOptions, 'key' | 'title'>) {
    super({ ...options, key: 'images', title: options.trans.__('Images') });
    this._buildPullForm();
  }

  protected count(): number | null {
    return this.model.images.data?.length ?? null;
  }

  protected state(): Section.IState<IImage[]> {
    const trans = this.trans;
    const { data, error, httpStatus } = this.model.images;
    return {
      data,
      error: error
        ? this.engineDown(httpStatus)
          ? trans.__('Images need the Docker engine (see above).')
          : trans.__('Could not list images: %1', error)
        : null,
      loading: trans.__('Loading images…')
    };
  }

  /** Pull and build jobs show even while the list loads or fails. */
  protected renderHead(): VirtualElement[] {
    const jobs = this.model.jobs.map(job =>
      renderJob(job, this.model, this.commands, this.trans)
    );
    return jobs.length > 0
      ? [
          h.div(
            { className: 'mlc-jobs', dataset: { testid: 'mlc-jobs' } },
            ...jobs
          )
        ]
      : [];
  }

  protected render(data: IImage[], stale: boolean): VirtualElement[] {
    if (data.length === 0) {
      return [
        message(
          'hint',
          'mlc-images-empty',
          this.trans.__(
            'No Docker images yet. Pull one above (e.g. pytorch/pytorch:latest), or docker pull / docker build on the host.'
          )
        )
      ];
    }
    return [
      h.div(
        { className: `mlc-rows${stale ? ' mlc-stale' : ''}` },
        ...data.map(image => this._row(image))
      )
    ];
  }

  private _row(image: IImage): VirtualElement {
    const trans = this.trans;
    const ref = imageRef(image);
    const run = (command: string, args: { [key: string]: string } = {}) =>
      void this.commands.execute(command, { image: ref, ...args });
    const created = formatDate(image.created);
    return h.div(
      {
        key: image.id,
        className: 'mlc-row mlc-image-row',
        dataset: {
          testid: 'mlc-image-row',
          'image-id': image.id,
          image: imageName(image)
        }
      },
      h.div(
        { className: 'mlc-row-head' },
        ...(image.tags.length > 0
          ? image.tags.map(tag => chip(tag, 'mlc-chip-tag', tag))
          : [chip(trans.__('<untagged>'), 'mlc-chip-tag mlc-untagged')]),
        h.code({ className: 'mlc-id', title: image.id }, shortId(image.id)),
        ...kids(
          image.engine &&
            chip(
              trans.__('on the Swarm'),
              'mlc-chip-engine',
              trans.__(
                'Not on this server\'s engine: held by the Swarm manager at %1',
                image.engine
              )
            )
        ),
        iconButton(
          copyIcon,
          trans.__('Copy digest'),
          () => run(CommandIDs.copyDigest),
          {
            testid: 'mlc-image-copy-digest',
            title: image.digests[0]
              ? trans.__('Copy digest %1', image.digests[0])
              : trans.__(
                  'Copy digest (local image without a registry digest: copies its id)'
                )
          }
        )
      ),
      h.div(
        { className: 'mlc-row-meta' },
        field(trans.__('Size'), formatBytes(image.size), 'mlc-image-size'),
        ...kids(created && field(trans.__('Created'), created))
      ),
      this._facts(image),
      h.div(
        {
          className: 'mlc-row-meta',
          dataset: { testid: 'mlc-image-kernelspecs' }
        },
        h.span({ className: 'mlc-field-label' }, trans.__('Kernels')),
        ...(image.kernelspecs.length > 0
          ? image.kernelspecs.map(name =>
              h.button(
                {
                  className: 'mlc-chip mlc-chip-kernelspec',
                  type: 'button',
                  title: trans.__('New notebook with kernel %1', name),
                  dataset: { testid: 'mlc-image-kernelspec' },
                  onclick: () =>
                    run(CommandIDs.newNotebook, { kernelName: name })
                },
                name
              )
            )
          : [
              h.span(
                { className: 'mlc-muted' },
                trans.__('none yet: Add as kernel')
              )
            ])
      ),
      ...image.swarm.map(cluster => this._nodes(cluster)),
      h.div(
        { className: 'mlc-actions' },
        ...(image.engine ? this._clusterActions(image) : this._actions(image))
      )
    );
  }

  /** An image only a Swarm holds: open a notebook with its kernelspec, nothing here to change. */
  private _clusterActions(image: IImage): VirtualElement[] {
    const trans = this.trans;
    const name = image.kernelspecs[0];
    return name
      ? [
          button(
            trans.__('New notebook'),
            () =>
              void this.commands.execute(CommandIDs.newNotebook, {
                image: imageRef(image),
                kernelName: name
              }),
            {
              testid: 'mlc-image-new-notebook',
              title: trans.__('New notebook with kernel %1', name)
            }
          )
        ]
      : [];
  }

  private _actions(image: IImage): VirtualElement[] {
    const trans = this.trans;
    const ref = imageRef(image);
    const run = (command: string, args: { [key: string]: string } = {}) =>
      void this.commands.execute(command, { image: ref, ...args });
    const adding = this.model.isBusy(`add:${ref}`);
    return [
      button(trans.__('Add as kernel'), () => run(CommandIDs.addKernel), {
        testid: 'mlc-image-add-kernel',
        title: trans.__(
          'Create a Jupyter kernel that runs in %1',
          imageName(image)
        ),
        disabled: adding
      }),
      button(trans.__('New notebook'), () => run(CommandIDs.newNotebook), {
        testid: 'mlc-image-new-notebook',
        title:
          image.kernelspecs.length > 0
            ? trans.__('New notebook with kernel %1', image.kernelspecs[0])
            : trans.__(
                'Add a kernel for this image, then open a new notebook with it'
              ),
        disabled: adding
      }),
      button(trans.__('Remove'), () => run(CommandIDs.removeImage), {
        testid: 'mlc-image-remove',
        title: trans.__('Remove %1 from the Docker engine', imageName(image)),
        className: 'mlc-button-danger',
        disabled: this.model.isBusy(`remove:${imageRef(image)}`)
      })
    ];
  }

  /** Which nodes of a Swarm hold the image (its Swarm kernelspecs run there). */
  private _nodes(cluster: ISwarmImage): VirtualElement {
    const trans = this.trans;
    const label = h.span(
      { className: 'mlc-field-label', title: cluster.manager },
      trans.__('Swarm nodes')
    );
    const attrs = {
      className: 'mlc-row-meta mlc-image-nodes',
      dataset: { testid: 'mlc-image-nodes', state: cluster.state }
    };
    if (cluster.state !== 'done') {
      return h.div(
        attrs,
        label,
        h.span(
          { className: 'mlc-muted', title: cluster.error ?? '' },
          cluster.state === 'error'
            ? trans.__('could not ask the cluster: %1', cluster.error ?? '')
            : trans.__('checking which nodes hold %1…', cluster.image)
        )
      );
    }
    const said = (hostname: string, state: string): string => {
      switch (state) {
        case 'present':
          return trans.__('%1 holds this image', hostname);
        case 'missing':
          return trans.__(
            '%1 does not hold this build of the image: a kernel placed there fails, or runs another build of the tag',
            hostname
          );
        case 'down':
          return trans.__('%1 is down or drained: not asked', hostname);
        default:
          return trans.__('%1: %2', hostname, state);
      }
    };
    return h.div(
      attrs,
      label,
      ...Object.entries(cluster.nodes ?? {}).map(([hostname, state]) => {
        const kind = ['present', 'missing', 'down'].includes(state)
          ? state
          : 'unknown';
        return h.span(
          {
            className: `mlc-chip mlc-node-image mlc-node-image-${kind}`,
            title: said(hostname, state),
            dataset: { testid: 'mlc-image-node', node: hostname, state: kind }
          },
          hostname
        );
      })
    );
  }

  private _facts(image: IImage): VirtualElement {
    const trans = this.trans;
    const facts = image.facts;
    const attrs = {
      className: `mlc-row-meta mlc-facts mlc-probe-${facts.probe}`,
      dataset: { testid: 'mlc-image-facts', probe: facts.probe }
    };
    if (facts.probe === 'pending') {
      return h.div(
        attrs,
        h.span(
          { className: 'mlc-muted' },
          trans.__('Inspecting Python, PyTorch and CUDA…')
        )
      );
    }
    if (facts.probe === 'error') {
      return h.div(
        attrs,
        h.span(
          { className: 'mlc-muted' },
          trans.__('Could not inspect this image')
        )
      );
    }
    return h.div(
      attrs,
      field('Python', facts.python_version ?? '—'),
      field('PyTorch', facts.torch ?? '—'),
      field('CUDA', facts.cuda ?? '—'),
      ...kids(
        facts.ipykernel
          ? field('ipykernel', facts.ipykernel)
          : h.span(
              {
                className: 'mlc-warning-text',
                title: trans.__('The image has no ipykernel installed')
              },
              trans.__('no ipykernel')
            )
      )
    );
  }

  /** The pull form is plain DOM so a poll tick never disturbs typing. */
  private _buildPullForm(): void {
    const trans = this.trans;
    const form = document.createElement('form');
    form.className = 'mlc-pull-form';
    form.dataset.testid = 'mlc-pull-form';
    const input = document.createElement('input');
    input.className = 'jp-mod-styled mlc-pull-input';
    input.placeholder = trans.__('Image to pull, e.g. pytorch/pytorch:latest');
    input.setAttribute('aria-label', trans.__('Image to pull'));
    input.dataset.testid = 'mlc-pull-input';
    input.spellcheck = false;
    const submit = document.createElement('button');
    submit.type = 'submit';
    submit.className =
      'jp-Button jp-mod-styled jp-mod-accept jp-mod-small mlc-button';
    submit.textContent = trans.__('Pull image');
    submit.dataset.testid = 'mlc-pull-button';
    const error = document.createElement('div');
    error.className = 'mlc-message mlc-message-error';
    error.dataset.testid = 'mlc-pull-error';
    error.setAttribute('role', 'alert');
    error.hidden = true;

    form.addEventListener('submit', event => {
      event.preventDefault();
      const name = input.value.trim();
      if (!name) {
        input.focus();
        return;
      }
      submit.disabled = true;
      error.hidden = true;
      this.commands
        .execute(CommandIDs.pullImage, { image: name })
        .then(() => {
          input.value = '';
        })
        .catch(reason => {
          error.textContent = trans.__(
            'Could not pull %1: %2',
            name,
            errorMessage(reason)
          );
          error.hidden = false;
        })
        .finally(() => {
          submit.disabled = false;
        });
    });
    form.append(input, submit);
    this.controls.append(form, error);
  }
}
