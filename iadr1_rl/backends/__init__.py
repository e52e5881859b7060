"""Where recipes run: local Ray actors (`local`), or OpenRLHF on a GPU cluster (`openrlhf`)."""
