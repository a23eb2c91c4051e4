/**
 * The extension's icon: a stack of containers, themed like JupyterLab icons.
 */
import { LabIcon } from '@jupyterlab/ui-components';

const containerSvg = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M3 13h5v5H3zm6 0h5v5H9zm6 0h5v5h-5zM6 7h5v5H6zm6 0h5v5h-5zm-3-6h5v5H9z" opacity=".9"/>
    <path d="M1 19.5h22v1.5a2 2 0 0 1-2 2H3a2 2 0 0 1-2-2z"/>
  </g>
</svg>`;

export const containerIcon = new LabIcon({
  name: 'jupyter-mlcontainer:container',
  svgstr: containerSvg
});
