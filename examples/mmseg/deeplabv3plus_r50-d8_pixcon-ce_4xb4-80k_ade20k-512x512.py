# DeepLabV3+ (mmseg's own ADE20K config) trained with cross-entropy plus pixcon's pixel-wise
# label-based contrastive term (Zhao et al., ICCV 2021) on the decoder features.
# mmseg's config is found in the installed mmseg package (under mmseg/.mim/configs, where
# mmengine's `mmseg::` scope looks too): that scope finds the package by its distribution name,
# mmsegmentation, and so misses the maintained fork onedl-mmsegmentation.
_base_ = [__import__('mmseg').__path__[0]
          + '/.mim/configs/deeplabv3plus/deeplabv3plus_r50-d8_4xb4-80k_ade20k-512x512.py']

# Registers PixelContrastiveLoss and DepthwiseSeparableASPPContrastHead in mmseg's MODELS.
custom_imports = dict(imports=['pixcon.mmseg'], allow_failed_imports=False)

model = dict(
    decode_head=dict(
        type='DepthwiseSeparableASPPContrastHead',
        # The paper's projection head: three 1x1 convolutions of 256 channels.
        projection_channels=256,
        projection_layers=3,
        # Every labelled pixel of each image at the decoder's resolution (1/4 of the crop):
        # pixcon never builds the pixels x pixels similarity matrix, so no sampling is needed.
        # A sampler picks fewer pixels instead, e.g. sampler=dict(strategy='uniform',
        # num_samples=10000) or, with the predictions the head passes, dict(strategy='hard_easy').
        # Weight 0.1 as in examples/train_step.py; the cross-entropy (loss_decode) is mmseg's.
        loss_contrast=dict(
            type='PixelContrastiveLoss', loss_name='loss_contrast', loss_weight=0.1,
            temperature=0.07)))
