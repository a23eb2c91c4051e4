"""Shared ground: the errors (each with its HTTP status), settings, trust rules for paths and
files, who owns what. Imports nothing else of the package.
"""
