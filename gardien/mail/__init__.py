"""Transactional e-mail (OPS-6): the outbox writer, the templates per language, the SMTP worker."""
