"""Exports of positions for officers and other systems (CSV, XLSX)."""
