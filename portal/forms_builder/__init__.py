"""No-code payment forms: what an officer defines for a service, and what a citizen's answers amount to.

Plain Python, no Flask: :mod:`.fields` (the kinds of field and how one answer is read), :mod:`.amounts` (the amount
rules), :mod:`.subjects` (the subject template), :mod:`.definition` (a whole form, checked as the officer builds
it and applied to a citizen's answers), :mod:`.templates` (ready forms for the common cases), :mod:`.models` and
:mod:`.services` (stored, versioned forms).
"""
