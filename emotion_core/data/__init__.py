"""Data: from an image folder to augmented batches.

    layout        folder layouts, split names, image extensions, synthetic masks
    images        robust decoding (CMYK, 16-bit, alpha, EXIF, bombs) to RGB uint8
    cleaning      duplicates, near duplicates, label conflicts (a report, never a deletion)
    prepare       index + clean + persisted split + class weights -> PreparedDataset
    subjects      the person each photo shows, from its file name: splits by whole people
    faces         face detection (MTCNN in `mtcnn`, Haar fallback in `haar`) and square crops
    transforms    resize_square / model_input, the batched augmentation kernels
    cache         decode-once memmapped cache and its batch loader
    cache_export  a compact copy of a cache for a machine without the images
    eda           class balance, sample grids, (batch) mean faces
    synthetic     the embedded procedural face dataset (drawing in `cartoon`)
"""
from emotion_core.data.cache import CachedLoader, CacheError, DecodedCache, build_cache
from emotion_core.data.layout import DEFAULT_CLASSES, SPLITS, discover, mask_path
from emotion_core.data.prepare import (
    PreparedDataset,
    class_weights,
    load_prepared,
    open_folder,
    prepare_dataset,
)

__all__ = ["CachedLoader", "CacheError", "DecodedCache", "build_cache", "DEFAULT_CLASSES",
           "SPLITS", "discover", "mask_path", "PreparedDataset", "class_weights", "load_prepared",
           "open_folder", "prepare_dataset"]
