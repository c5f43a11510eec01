"""Notes about a contact: write, edit (author or admin), pin, search, list on the contact page."""
