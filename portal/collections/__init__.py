"""Collections: overdue credits, reminders (solleciti), litigation re-issues, and the interest and penalty engine."""
