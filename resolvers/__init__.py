"""Operations: what each GraphQL field or CLI command does, with no GraphQL in sight."""
