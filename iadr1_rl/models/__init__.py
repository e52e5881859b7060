"""Loading HF vision-language models, and the tiny offline one the CPU demo builds."""
