"""Text input shared by the text tasks: corpora and their splits, Wikipedia markup,
WordPiece vocabularies and tokenizers."""
