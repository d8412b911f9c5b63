"""Translation functions: ``_`` (Slicer's ``tr``) and ``translate``.

``tr`` takes its translation context from the file that calls it (``AIAIF``
for the module file, ``AIAIFModuleLib.<file>`` for the files here;
``getContext`` in Slicer's Base/Python/slicer/i18n.py), so ``_`` is Slicer's
function itself, not a wrapper that would make this file the caller.
"""

try:
    from slicer.i18n import tr as _
    from slicer.i18n import translate
except ImportError:  # Slicer releases before translations (and slicer-core) have no slicer.i18n
    def _(text):
        return text

    def translate(context, text):
        return text
