"""Offline evaluation: dataset loaders, retrieval and answer metrics, runners and the
reports (JSON, Markdown, HTML with plots) that compare modes and runs.
"""
