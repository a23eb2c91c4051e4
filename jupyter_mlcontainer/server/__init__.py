"""The Jupyter server extension: the app, the REST handlers, the HTTP error mapping, OpenAPI.
"""
