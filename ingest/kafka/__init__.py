"""Everything that speaks Kafka: the producer with its accounting, and topic seeding."""
