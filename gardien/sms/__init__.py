"""SMS: the outbox writer, the templates, and the senders that hand messages to a gateway."""
