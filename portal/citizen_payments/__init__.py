"""What a citizen pays from the portal: spontaneous payments made with a service's form, and notices looked up by
number and fiscal code; opening the pagoPA Checkout cart, following it to the receipt, the receipt PDF and e-mail.

Services and adapters (they use the ledger, the forms and the pagoPA clients); no Flask import.
"""
