/**
 * Virtual-DOM building blocks shared by the panel sections.
 *
 * The sections render with @lumino/virtualdom: rows are keyed, so a poll tick
 * only patches what changed and never swaps a button out from under a click.
 */
import { LabIcon } from '@jupyterlab/ui-components';
import { ElementAttrs, h, hpass, VirtualElement } from '@lumino/virtualdom';

import { percent } from './format';

export type Child = VirtualElement | string | null | false | undefined;

/** Drop the falsy children so conditionals read naturally. */
export function kids(...children: Child[]): (VirtualElement | string)[] {
  return children.filter(
    (c): c is VirtualElement | string =>
      c !== null && c !== false && c !== undefined && c !== ''
  );
}

export interface IButtonOptions {
  testid: string;
  title?: string;
  disabled?: boolean;
  /** Extra CSS class, e.g. mlc-button-danger */
  className?: string;
}

/** A JupyterLab-styled small button. */
export function button(
  label: string,
  onclick: () => void,
  options: IButtonOptions
): VirtualElement {
  const attrs: ElementAttrs = {
    className:
      `jp-Button jp-mod-styled jp-mod-small mlc-button ${options.className ?? ''}`.trim(),
    type: 'button',
    title: options.title ?? label,
    dataset: { testid: options.testid },
    onclick: () => {
      onclick();
    },
    ...(options.disabled ? { disabled: 'disabled' } : {})
  };
  return h.button(attrs, label);
}

/** A small icon-only button; `label` is its accessible name and tooltip. */
export function iconButton(
  icon: LabIcon,
  label: string,
  onclick: () => void,
  options: IButtonOptions
): VirtualElement {
  return h.button(
    {
      className:
        `jp-Button jp-mod-minimal mlc-icon-button ${options.className ?? ''}`.trim(),
      type: 'button',
      title: options.title ?? label,
      'aria-label': label,
      dataset: { testid: options.testid },
      onclick: () => {
        onclick();
      },
      ...(options.disabled ? { disabled: 'disabled' } : {})
    },
    hpass(
      'span',
      { className: 'mlc-icon' },
      {
        // Draw once: redrawing on every poll tick could swallow a click.
        render: host => {
          if (!host.firstChild) {
            icon.element({ container: host, height: '14px', width: '14px' });
          }
        }
      }
    )
  );
}

/** A message line: a hint for empty states, an error, or a warning. */
export function message(
  kind: 'hint' | 'error' | 'warning' | 'info',
  testid: string,
  ...text: Child[]
): VirtualElement {
  return h.div(
    {
      className: `mlc-message mlc-message-${kind}`,
      dataset: { testid },
      role: kind === 'error' ? 'alert' : 'status'
    },
    ...kids(...text)
  );
}

/** `label value` pair inside a row. */
export function field(
  label: string,
  value: Child,
  testid?: string
): VirtualElement {
  return h.span(
    { className: 'mlc-field', ...(testid ? { dataset: { testid } } : {}) },
    h.span({ className: 'mlc-field-label' }, label),
    ...kids(' ', value)
  );
}

/**
 * A horizontal bar for a 0..1 fraction (null: unknown), with its text.
 * `level` colours it: > 0.9 is critical, > 0.7 is warn.
 */
export function bar(
  fraction: number | null,
  text: string,
  testid: string
): VirtualElement {
  const level =
    fraction === null
      ? 'unknown'
      : fraction > 0.9
        ? 'critical'
        : fraction > 0.7
          ? 'warn'
          : 'ok';
  return h.div(
    {
      className: `mlc-bar mlc-bar-${level}`,
      dataset: { testid },
      role: 'meter',
      title: text,
      'aria-valuemin': '0',
      'aria-valuemax': '100',
      ...(fraction === null
        ? {}
        : { 'aria-valuenow': String(Math.round(fraction * 100)) })
    },
    h.div({
      className: 'mlc-bar-fill',
      style: { width: fraction === null ? '0%' : percent(fraction) }
    }),
    h.span({ className: 'mlc-bar-text' }, text)
  );
}

/** A small rounded label (a tag, a kernelspec, a state). */
export function chip(
  text: string,
  className = '',
  title?: string
): VirtualElement {
  return h.span(
    { className: `mlc-chip ${className}`.trim(), ...(title ? { title } : {}) },
    text
  );
}
