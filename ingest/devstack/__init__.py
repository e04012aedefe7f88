"""A real local Kafka (KRaft) and Schema Registry (Apicurio, Confluent API) from Maven Central jars."""
