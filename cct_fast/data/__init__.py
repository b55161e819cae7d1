"""What a model learns from: image datasets (:mod:`.image_data`: digits, CIFAR, image folders,
Flowers-102, ImageNet, TensorFlow Datasets through :mod:`.tfds_data`, their files checked up
front by :mod:`.image_files`) and text corpora (:mod:`.text_data`, tokenized by
:mod:`.text_encoder`), and their tf.data pipelines (:mod:`.pipeline` with
:mod:`.randaugment`, :mod:`.text_pipeline`).

Listing a dataset and checking its files needs no TensorFlow; decoding and the pipelines
import it where they run.
"""
