"""Diandian's domain: one subpackage per area, sharing carbon.core."""
