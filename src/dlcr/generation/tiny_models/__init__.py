"""The ``tiny`` backends' models: real architectures (diffusers inpainting pipeline, vision-language
and language models) at toy size with random weights, built offline from configs and cached.

They run the real code paths of the diffusers / transformers backends without a download; their
outputs are meaningless (noise images, gibberish text), and every such backend says so in its label.
"""
