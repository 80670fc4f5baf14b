# Stage 1 of Zhao et al. (ICCV 2021): DeepLabV3+ pretrained with the pixel-wise label-based
# contrastive loss alone. Stage 2 (the *-stage2 config) fine-tunes it with cross-entropy.
_base_ = ['./deeplabv3plus_r50-d8_pixcon-ce_4xb4-80k_ade20k-512x512.py']

model = dict(
    decode_head=dict(
        # No cross-entropy: the classifier conv_seg stays untrained in this stage.
        loss_decode=[],
        loss_contrast=dict(loss_weight=1.0)),
    # The auxiliary FCN head trains with cross-entropy only, so it has no place here.
    auxiliary_head=None)

# conv_seg receives no gradient, which DistributedDataParallel must be told about.
find_unused_parameters = True
